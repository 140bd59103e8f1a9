//! The `metadata_props` of an ONNX model, read without the rest of the format.
//!
//! `diten models`, `results` and `demo` need a shipped model's [`keys`](super::keys)
//! only, and they run in builds without the `onnx` feature (`make demo`), which
//! have no ONNX protobuf types. [`Metadata`] declares the one field of
//! `ModelProto` they read (`metadata_props`, field 14 of onnx.proto, and its
//! `StringStringEntryProto` key 1 and value 2); protobuf decoding skips every other
//! field (the graph and its weights) after checking its framing, so bytes that are
//! not protobuf are still an error.

use prost::Message;

/// The `metadata_props` of an ONNX `ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct Metadata {
    /// `ModelProto.metadata_props`, in file order.
    #[prost(message, repeated, tag = "14")]
    pub props: Vec<Entry>,
}

/// One `StringStringEntryProto`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    /// Its key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Metadata {
    /// The metadata of the ONNX model `bytes`; an error when they are not protobuf.
    pub fn read(bytes: &[u8]) -> Result<Metadata, prost::DecodeError> {
        Metadata::decode(bytes)
    }

    /// The value of `key`, if the model has it (the first, if it has several).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }
}

#[cfg(all(test, feature = "onnx"))]
mod tests {
    use super::*;
    use crate::onnx::export::tests::tiny;
    use crate::onnx::{keys, model_proto};

    /// The same keys and values as tract's full `ModelProto` reads from an exported model.
    #[test]
    fn agrees_with_the_full_model_proto() {
        let extra = [(keys::EVALUATION.to_owned(), "{\"rows\": []}".to_owned())];
        let model = model_proto(&tiny(true), &extra).unwrap();
        let bytes = model.encode_to_vec();
        let meta = Metadata::read(&bytes).unwrap();
        let full: Vec<(&str, &str)> = model
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        let light: Vec<(&str, &str)> = meta
            .props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(light, full);
        assert!(light.len() >= 5, "{light:?}");
        assert_eq!(meta.get(keys::EVALUATION), Some("{\"rows\": []}"));
        assert_eq!(meta.get("diten.nothing"), None);
    }

    #[test]
    fn bytes_that_are_not_protobuf_are_an_error() {
        assert!(Metadata::read(b"not an onnx model").is_err());
        // A truncated model: the graph's length runs past the end.
        let bytes = model_proto(&tiny(false), &[]).unwrap().encode_to_vec();
        assert!(Metadata::read(&bytes[..bytes.len() / 2]).is_err());
    }
}
