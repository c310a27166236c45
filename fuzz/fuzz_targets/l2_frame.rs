#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolb::fuzzing::l2_frame(data));
