#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolb::fuzzing::legacy_config(data));
