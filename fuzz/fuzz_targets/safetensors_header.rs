//! F2 `safetensors_header`: raw bytes -> `parse_safetensors`. No panic or OOM; every returned view
//! is in bounds and consistent; the tensors tile the data buffer; and whatever we accept, the
//! reference `safetensors` crate accepts too, with the same shapes and bytes.
#![no_main]

use ahead_model::format::safetensors::parse_safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse_safetensors(data, "fuzz") else {
        return;
    };
    let mut covered = 0usize;
    for name in file.names() {
        let t = file
            .tensor(data, name)
            .unwrap_or_else(|| panic!("{name} out of bounds"));
        if let Err(e) = t.validate("fuzz", name) {
            panic!("parsed tensor is inconsistent: {e}");
        }
        covered += t.data.len();
    }
    assert_eq!(
        file.data_start + covered,
        data.len(),
        "tensors do not tile the buffer"
    );

    let reference = match safetensors::SafeTensors::deserialize(data) {
        Ok(r) => r,
        Err(e) => panic!("we accepted a file the safetensors crate rejects: {e:?}"),
    };
    assert_eq!(reference.len(), file.tensors.len());
    for (name, view) in reference.tensors() {
        let t = file
            .tensor(data, &name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.shape, view.shape(), "{name}");
        assert_eq!(t.data, view.data(), "{name}");
    }
});
