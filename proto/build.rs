//! Compiles the protobuf schemas under `proto/` (package `ringhub.v1`, DESIGN.md §5)
//! into Rust with prost. The schemas are parsed by protox, a pure-Rust protobuf
//! compiler, so no `protoc` is needed on the build machine.

use std::{
    error::Error,
    fs,
    path::{Path, PathBuf},
};

/// Root of the proto import tree; imports are written `ringhub/v1/<file>.proto`.
const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn Error>> {
    let mut files = Vec::new();
    collect_protos(Path::new(PROTO_ROOT), &mut files)?;
    // Sorted, so that the descriptor set and the generated code do not depend on the
    // order the file system lists directories in.
    files.sort();

    // Rebuild when a schema changes, and when one is added or removed.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [PROTO_ROOT])?;
    prost_build::Config::new()
        // `prost::Name` on every message: its package and full name, checked against
        // `SCHEMA_PACKAGE` in the tests and usable in logs and type URLs.
        .enable_type_names()
        .compile_fds(descriptors)?;
    Ok(())
}

/// Appends every `.proto` file under `dir`, recursively, to `out`.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
