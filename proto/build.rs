//! Compiles every `.proto` under this folder with protox (a pure-Rust compiler, so no
//! `protoc` is needed) and generates the prost messages and tonic stubs from it. The
//! encoded descriptor set, with custom options such as `google.api.http` intact, is
//! written next to the generated code for reflection and the gateway.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut files = Vec::new();
    collect_protos(&root.join("weft"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.join("weft").display());
    println!("cargo:rerun-if-changed={}", root.join("google").display());

    let relative: Vec<PathBuf> = files
        .iter()
        .map(|f| f.strip_prefix(&root).map(Path::to_path_buf))
        .collect::<Result<_, _>>()?;
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&relative)?;
    std::fs::write(
        out.join("weft_descriptor.binpb"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

fn collect_protos(dir: &Path, into: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, into)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            into.push(path);
        }
    }
    Ok(())
}
