//! Generates `include/omnipaxos.h` with cbindgen (configured by `cbindgen.toml`) and the
//! pkg-config file `omnipaxos.pc` next to the built library (`target/<profile>/`).
//!
//! The header is written to `$OUT_DIR/omnipaxos.h` on every run (tests/header.rs compares it
//! with the committed file) and to `include/omnipaxos.h` only when its content changes, so a
//! build never dirties the tree when nothing changed.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=omnipaxos.pc.in");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=include/omnipaxos.h");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let version = env::var("CARGO_PKG_VERSION").expect("CARGO_PKG_VERSION");

    let header = generate_header(&root, &version);
    write_if_changed(&out_dir.join("omnipaxos.h"), &header).expect("write $OUT_DIR/omnipaxos.h");
    let committed = root.join("include").join("omnipaxos.h");
    if let Err(e) = write_if_changed(&committed, &header) {
        println!("cargo:warning=cannot update {}: {e}", committed.display());
    }

    if let Some(lib_dir) = profile_dir(&out_dir) {
        let pc = pkg_config(&root, &lib_dir, &version);
        if let Err(e) = write_if_changed(&lib_dir.join("omnipaxos.pc"), &pc) {
            println!("cargo:warning=cannot write omnipaxos.pc: {e}");
        }
    }
}

/// Runs cbindgen on `src/ffi/` with `cbindgen.toml` plus the version macro.
fn generate_header(root: &Path, version: &str) -> String {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    config.after_includes = Some(format!(
        "\n/** The version of libomnipaxos this header belongs to (see omnipaxos_version()). */\n\
         #define OMNIPAXOS_VERSION \"{version}\""
    ));
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src").join("ffi").join("mod.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen failed: {e}"));
    let mut buf = Vec::new();
    bindings.write(&mut buf);
    String::from_utf8(buf).expect("cbindgen wrote UTF-8")
}

fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, content)
}

/// `target/<profile>` (or `target/<triple>/<profile>`): where cargo puts the library.
/// `$OUT_DIR` is `<that>/build/<pkg>-<hash>/out`.
fn profile_dir(out_dir: &Path) -> Option<PathBuf> {
    out_dir.ancestors().nth(3).map(Path::to_path_buf)
}

fn pkg_config(root: &Path, lib_dir: &Path, version: &str) -> String {
    let template = fs::read_to_string(root.join("omnipaxos.pc.in"))
        .unwrap_or_else(|e| panic!("omnipaxos.pc.in: {e}"));
    template
        .replace("@PREFIX@", &root.display().to_string())
        .replace("@LIBDIR@", &lib_dir.display().to_string())
        .replace("@VERSION@", version)
}
