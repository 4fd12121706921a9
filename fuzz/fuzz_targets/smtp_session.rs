#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mailcred_fuzz::smtp::smtp_session(data));
