//! F2b `safetensors_index`: `model.safetensors.index.json` bytes -> `parse_safetensors_index`.
//! No panic; every accepted shard name is one plain path component ending in `.safetensors`.
#![no_main]

use std::path::{Component, Path};

use ahead_model::format::safetensors::parse_safetensors_index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(map) = parse_safetensors_index(data, "fuzz") else {
        return;
    };
    for (tensor, shard) in &map {
        assert!(shard.ends_with(".safetensors"), "{tensor}: {shard:?}");
        assert!(!shard.contains(['/', '\\']), "{tensor}: {shard:?}");
        let components: Vec<_> = Path::new(shard).components().collect();
        assert!(
            matches!(components[..], [Component::Normal(_)]),
            "{tensor}: {shard:?} is not one plain file name"
        );
        // Joining onto a folder stays inside the folder.
        assert!(Path::new("/models/m").join(shard).starts_with("/models/m"));
    }
});
