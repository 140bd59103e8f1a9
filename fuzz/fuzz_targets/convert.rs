//! The ONNX → blob converter on arbitrary bytes; a blob it writes must parse in
//! the controller and give finite logits on a zero observation... or at least
//! evaluate without error.
#![no_main]

use diten_controller::policy::Policy;
use diten_trainer::onnx::onnx_to_blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(blob) = onnx_to_blob(data) else {
        return;
    };
    let policy = Policy::parse(&blob).expect("the converter's blob parses");
    let obs = vec![0.0f32; policy.obs_dim()];
    let mut scratch = vec![0.0f32; policy.scratch_len()];
    let mut logits = vec![0.0f32; policy.logits_len()];
    assert_eq!(policy.logits(&obs, &mut scratch, &mut logits), Ok(()));
});
