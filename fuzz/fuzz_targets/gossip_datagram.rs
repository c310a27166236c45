#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrolb::fuzzing::gossip_datagram(data));
