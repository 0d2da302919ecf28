// Three Omni-Paxos nodes in one process, from C++: the same as examples/c/cluster.c, with
// the C handles owned by std::unique_ptr (custom deleters) and errors turned into
// exceptions.
//
// Build (from the repository root, after `cargo build --release`), on one line:
//   g++ -std=c++17 -Wall -Wextra -Werror -Iinclude examples/cpp/cluster.cpp
//       -Ltarget/release -lomnipaxos -Wl,-rpath,"$PWD/target/release" -o cluster_cpp
// or: make -C examples
#include <cstdint>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "omnipaxos.h"

namespace omnipaxos {

struct NodeDeleter {
    void operator()(omnipaxos_node *n) const noexcept { omnipaxos_node_free(n); }
};
struct EntriesDeleter {
    void operator()(omnipaxos_entries *e) const noexcept { omnipaxos_entries_free(e); }
};
using NodePtr = std::unique_ptr<omnipaxos_node, NodeDeleter>;
using EntriesPtr = std::unique_ptr<omnipaxos_entries, EntriesDeleter>;

// A failed call: the code, its description and the thread's last-error detail.
class Error : public std::runtime_error {
  public:
    Error(const char *what, omnipaxos_result code)
        : std::runtime_error(std::string(what) + ": " + omnipaxos_strerror(code) + " (" +
                             last_error() + ")"),
          code_(code) {}
    omnipaxos_result code() const noexcept { return code_; }

  private:
    static std::string last_error() {
        std::string s(omnipaxos_last_error(nullptr, 0), '\0');
        omnipaxos_last_error(&s[0], s.size() + 1);
        return s;
    }
    omnipaxos_result code_;
};

inline void check(omnipaxos_result rc, const char *what) {
    if (rc != OMNIPAXOS_OK) throw Error(what, rc);
}

// A node: owns the C handle; movable, not copyable.
class Node {
  public:
    explicit Node(const std::string &hocon) {
        omnipaxos_node *raw = nullptr;
        check(omnipaxos_node_from_hocon_str(hocon.data(), hocon.size(), &raw), "create node");
        node_.reset(raw);
    }
    void tick() { check(omnipaxos_tick(node_.get()), "tick"); }
    void append(const std::string &entry) {
        check(omnipaxos_append(node_.get(), reinterpret_cast<const uint8_t *>(entry.data()),
                               entry.size()),
              "append");
    }
    void handle_incoming(const uint8_t *data, size_t len) {
        check(omnipaxos_handle_incoming(node_.get(), data, len), "handle_incoming");
    }
    // Valid until the next take_outgoing() on this node.
    std::pair<const omnipaxos_outgoing *, size_t> take_outgoing() {
        const omnipaxos_outgoing *msgs = nullptr;
        size_t count = 0;
        check(omnipaxos_take_outgoing(node_.get(), &msgs, &count), "take_outgoing");
        return {msgs, count};
    }
    uint64_t leader() {
        uint64_t pid = 0;
        check(omnipaxos_leader(node_.get(), &pid, nullptr), "leader");
        return pid;
    }
    uint64_t decided_idx() {
        uint64_t idx = 0;
        check(omnipaxos_decided_idx(node_.get(), &idx), "decided_idx");
        return idx;
    }
    std::vector<std::string> decided_log(uint64_t from = 0) {
        omnipaxos_entries *raw = nullptr;
        check(omnipaxos_read_decided_suffix(node_.get(), from, &raw), "read_decided_suffix");
        EntriesPtr entries(raw);
        std::vector<std::string> out;
        for (size_t i = 0; i < omnipaxos_entries_count(entries.get()); i++) {
            const uint8_t *data = nullptr;
            size_t len = 0;
            check(omnipaxos_entries_get(entries.get(), i, &data, &len, nullptr), "entries_get");
            out.emplace_back(reinterpret_cast<const char *>(data), len);
        }
        return out;
    }

  private:
    NodePtr node_;
};

}  // namespace omnipaxos

int main() {
    try {
        std::vector<omnipaxos::Node> nodes;  // nodes[i] has pid i + 1
        for (int pid = 1; pid <= 3; pid++)
            nodes.emplace_back("pid = " + std::to_string(pid) +
                               "\nnodes = [1, 2, 3]\nelection_tick_timeout = 5\n");

        auto exchange = [&] {
            for (bool busy = true; busy;) {
                busy = false;
                for (auto &n : nodes) {
                    auto [msgs, count] = n.take_outgoing();
                    for (size_t k = 0; k < count; k++) {
                        nodes.at(msgs[k].receiver - 1).handle_incoming(msgs[k].data, msgs[k].len);
                        busy = true;
                    }
                }
            }
        };
        auto tick_all = [&] {
            for (auto &n : nodes) n.tick();
            exchange();
        };

        uint64_t leader = 0;
        for (int t = 0; t < 1000; t++) {
            tick_all();
            uint64_t l = nodes[0].leader();
            if (l != 0 && nodes[1].leader() == l && nodes[2].leader() == l) {
                leader = l;
                break;
            }
        }
        if (leader == 0) throw std::runtime_error("no leader elected");
        std::cout << "leader: node " << leader << "\n";

        nodes[leader - 1].append("from the leader");
        nodes[leader % 3].append("from a follower");
        for (int t = 0; t < 1000; t++) {
            if (nodes[0].decided_idx() >= 2 && nodes[1].decided_idx() >= 2 &&
                nodes[2].decided_idx() >= 2)
                break;
            tick_all();
        }
        for (size_t i = 0; i < nodes.size(); i++) {
            auto log = nodes[i].decided_log();
            std::cout << "node " << i + 1 << " decided " << log.size() << " entries:";
            for (auto &e : log) std::cout << " [" << e << "]";
            std::cout << "\n";
            if (log.size() != 2) throw std::runtime_error("expected 2 decided entries");
        }
        return 0;
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
