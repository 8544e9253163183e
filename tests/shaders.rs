//! Every `shaders/*.wgsl` file parses and validates with naga, and every one is built into a
//! pipeline by the crate (so no file is dead or missing from `kernels::SHADERS`).
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

#[test]
fn every_shader_parses_and_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("shaders/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let source = std::fs::read_to_string(&path).unwrap();
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}:\n{}", path.display(), e.emit_to_string(&source)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}:\n{}", path.display(), e.emit_to_string(&source)));
            on_disk.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    let built: BTreeSet<String> = webvae::kernels::SHADERS.iter().map(|(name, _)| name.to_string()).collect();
    assert!(!on_disk.is_empty(), "no shaders found in {dir}");
    assert_eq!(on_disk, built, "shaders/ and kernels::SHADERS disagree");
}
