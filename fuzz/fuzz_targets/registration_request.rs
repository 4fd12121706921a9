#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mailcred_fuzz::registration::registration_request(data));
