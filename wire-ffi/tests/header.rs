//! `include/wire.h` is generated from this crate by cbindgen and committed; this fails when
//! the two differ. `WIRE_UPDATE_HEADER=1 cargo test -p wire-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_the_generated_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("generating the header")
        .write(&mut generated);
    let path = dir.join("../include/wire.h");
    if std::env::var_os("WIRE_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("writing include/wire.h");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/wire.h differs from the header generated from wire-ffi/src; \
         run `WIRE_UPDATE_HEADER=1 cargo test -p wire-ffi --test header` and commit it"
    );
}
