//! `ImageRef::parse` on arbitrary text: never panics, and an accepted reference prints as text that
//! parses back to the same value (the property of tests/fuzz_props.rs, driven by libFuzzer).
#![no_main]

use kkp_shared::reference::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = ImageRef::parse(input) else {
        return;
    };
    let printed = r.to_string();
    let again = ImageRef::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} parsed to {printed:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{input:?} → {printed:?} parses differently");
    assert_eq!(again.to_string(), printed, "{printed:?} does not print stably");
    assert!(
        r.tag.is_some() || r.digest.is_some(),
        "{input:?} parsed without tag or digest"
    );
});
