/*
 * This disk's raw durable-write rate: N times, write 16 bytes to the end of a file and
 * fdatasync it. Prints one JSON line with the syncs per second and the median time of one.
 * Usage: fsync <dir> [count]   (the file <dir>/fsync-probe is removed afterwards)
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: fsync <dir> [count]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    if (n < 1) n = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync-probe", argv[1]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    double *t = malloc((size_t)n * sizeof *t);
    if (!t) return 1;
    char buf[16];
    memset(buf, 'x', sizeof buf);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        double a = now();
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0) {
            perror("write/fdatasync");
            return 1;
        }
        t[i] = now() - a;
    }
    double secs = now() - t0;
    close(fd);
    unlink(path);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    printf("{\"impl\":\"fdatasync\",\"count\":%d,\"secs\":%.6f,\"syncs_per_s\":%.1f,"
           "\"p50_us\":%.1f,\"p90_us\":%.1f}\n",
           n, secs, n / secs, t[n / 2] * 1e6, t[n * 9 / 10] * 1e6);
    free(t);
    return 0;
}
