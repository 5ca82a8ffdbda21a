//! Amber's on-disk column blocks (samples, exemplars, native histograms) and label sets; the
//! first byte picks the decoder.
#![no_main]

use amber_storage::block;
use amber_storage::chunkenc::varint::Reader;
use amber_storage::labels::Labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 5 {
        0 => drop(block::decode_samples(rest)),
        1 => drop(block::decode_exemplars(rest)),
        2 => drop(block::decode_histograms(rest)),
        3 => drop(Labels::decode(&mut Reader::new(rest))),
        _ => drop(amber_storage::chunkenc::histogram::decode(&mut Reader::new(rest))),
    }
});
