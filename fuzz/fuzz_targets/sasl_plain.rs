#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mailcred_fuzz::sasl::sasl_plain(data));
