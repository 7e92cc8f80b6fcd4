#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealvol_fuzz::crypto::key_header(data));
