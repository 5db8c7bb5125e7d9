//! The archive reader (`Layout::open`, then `push_jobs`) on arbitrary bytes written to a file: never
//! panics, and every error is one line naming the archive.
#![no_main]

use std::io::Write;

use kkp_shared::copy::archive::{Layout, push_jobs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new()
        .prefix("kkp-fuzz-")
        .suffix(".tar")
        .tempfile()
        .expect("temp file");
    file.write_all(data).expect("write temp file");
    file.flush().expect("flush temp file");
    let path = file.path();
    for verify in [true, false] {
        match Layout::open(path, verify) {
            Ok(layout) => {
                let _ = layout.base();
                if let Err(e) = push_jobs(&layout, "reg.local:5000/mirror") {
                    let msg = e.to_string();
                    assert!(!msg.contains('\n'), "multi-line error: {msg}");
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line error: {msg}");
                assert!(
                    msg.contains(&path.display().to_string()),
                    "error does not name the archive: {msg}"
                );
            }
        }
    }
});
