//! hint's (Hugging Face) variable names as t5x spells them, so that an assignment map
//! written for the original HINT (`(.*)/(hyper/hyper_encoder|encoder)/(.*)`) can be applied
//! to hint's variables unchanged.
//!
//! t5x flattens a parameter's path with `/` under `target/` (t5x's minimal T5 and the
//! original's hypernetwork): `encoder.block.3.layer.1.DenseReluDense.wi_0.weight` is
//! `target/encoder/layers_3/mlp/wi_0/kernel`. Names without a t5x counterpart keep their
//! parts, joined by `/` under `target/`, so every name has exactly one spelling.
//!
//! ```
//! use hint_model::t5x_names::to_t5x;
//! assert_eq!(
//!     to_t5x("decoder.block.0.layer.1.EncDecAttention.q.weight"),
//!     "target/decoder/layers_0/encoder_decoder_attention/query/kernel"
//! );
//! assert_eq!(
//!     to_t5x("hyper.hyper_encoder.final_layer_norm.weight"),
//!     "target/hyper/hyper_encoder/encoder_norm/scale"
//! );
//! ```

/// The t5x spelling of a hint variable name (see the module documentation).
pub fn to_t5x(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let path = match parts.as_slice() {
        ["shared", "weight"] => vec!["token_embedder".to_string(), "embedding".into()],
        ["lm_head", "weight"] => vec!["decoder".into(), "logits_dense".into(), "kernel".into()],
        ["encoder", rest @ ..] => stack("encoder", rest, Stack::Encoder),
        ["decoder", rest @ ..] => stack("decoder", rest, Stack::Decoder),
        ["hyper", "hyper_encoder", rest @ ..] => {
            prefixed("hyper", stack("hyper_encoder", rest, Stack::Encoder))
        }
        ["hyper", "hyper_decoder", rest @ ..] => {
            prefixed("hyper", stack("hyper_decoder", rest, Stack::HyperDecoder))
        }
        _ => generic(&parts),
    };
    format!("target/{}", path.join("/"))
}

#[derive(Clone, Copy, PartialEq)]
enum Stack {
    Encoder,
    Decoder,
    /// HyperTune's: a cross-attention sublayer, then the feed-forward.
    HyperDecoder,
}

fn prefixed(first: &str, mut rest: Vec<String>) -> Vec<String> {
    rest.insert(0, first.to_string());
    rest
}

/// `name.weight` parts in t5x's spelling (`kernel` for projections, `scale` for norms).
fn generic(parts: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    if let (Some(last), Some(owner)) = (out.last().cloned(), parts.iter().rev().nth(1)) {
        if last == "weight" {
            let leaf = if owner.ends_with("norm") {
                "scale"
            } else {
                "kernel"
            };
            *out.last_mut().expect("non-empty") = leaf.into();
        }
    }
    out
}

fn stack(root: &str, rest: &[&str], kind: Stack) -> Vec<String> {
    let mut path = vec![root.to_string()];
    let tail: Vec<String> = match rest {
        ["final_layer_norm", "weight"] => {
            let norm = if kind == Stack::Encoder {
                "encoder_norm"
            } else {
                "decoder_norm"
            };
            vec![norm.into(), "scale".into()]
        }
        ["block", "0", "layer", "0", "SelfAttention", "relative_attention_bias", "weight"] => {
            vec!["relpos_bias".into(), "rel_embedding".into()]
        }
        ["block", index, "layer", sublayer, rest @ ..] => {
            let mut layer = vec![format!("layers_{index}")];
            layer.extend(sublayer_path(kind, sublayer, rest));
            layer
        }
        _ => generic(rest),
    };
    path.extend(tail);
    path
}

/// A block's sublayer `layer.N.<module>…` in t5x's names.
fn sublayer_path(kind: Stack, sublayer: &str, rest: &[&str]) -> Vec<String> {
    // Which sublayer index holds what, per stack.
    let role = match (kind, sublayer) {
        (Stack::Encoder, "0") => "attention",
        (Stack::Encoder, "1") => "mlp",
        (Stack::Decoder, "0") => "self_attention",
        (Stack::Decoder, "1") | (Stack::HyperDecoder, "0") => "encoder_decoder_attention",
        (Stack::Decoder, "2") | (Stack::HyperDecoder, "1") => "mlp",
        _ => return generic(&[&["layer", sublayer], rest].concat()),
    };
    match rest {
        ["layer_norm", "weight"] => {
            let norm = match role {
                "attention" => "pre_attention_layer_norm",
                "self_attention" => "pre_self_attention_layer_norm",
                "encoder_decoder_attention" => "pre_cross_attention_layer_norm",
                _ => "pre_mlp_layer_norm",
            };
            vec![norm.into(), "scale".into()]
        }
        [_, projection, "weight"] if role != "mlp" => {
            let projection = match *projection {
                "q" => "query",
                "k" => "key",
                "v" => "value",
                "o" => "out",
                other => other,
            };
            vec![role.into(), projection.into(), "kernel".into()]
        }
        ["DenseReluDense", projection, "weight"] => {
            vec![role.into(), projection.to_string(), "kernel".into()]
        }
        _ => {
            let mut out = vec![role.to_string()];
            out.extend(generic(rest));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_names_follow_t5x_minimal_t5() {
        for (hint, t5x) in [
            ("shared.weight", "target/token_embedder/embedding"),
            ("lm_head.weight", "target/decoder/logits_dense/kernel"),
            (
                "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                "target/encoder/relpos_bias/rel_embedding",
            ),
            (
                "encoder.block.2.layer.0.SelfAttention.o.weight",
                "target/encoder/layers_2/attention/out/kernel",
            ),
            (
                "encoder.block.2.layer.0.layer_norm.weight",
                "target/encoder/layers_2/pre_attention_layer_norm/scale",
            ),
            (
                "encoder.block.2.layer.1.DenseReluDense.wi_1.weight",
                "target/encoder/layers_2/mlp/wi_1/kernel",
            ),
            (
                "encoder.final_layer_norm.weight",
                "target/encoder/encoder_norm/scale",
            ),
            (
                "decoder.block.1.layer.0.layer_norm.weight",
                "target/decoder/layers_1/pre_self_attention_layer_norm/scale",
            ),
            (
                "decoder.block.1.layer.2.layer_norm.weight",
                "target/decoder/layers_1/pre_mlp_layer_norm/scale",
            ),
            (
                "decoder.final_layer_norm.weight",
                "target/decoder/decoder_norm/scale",
            ),
            (
                "hyper.hyper_decoder.block.1.layer.0.EncDecAttention.k.weight",
                "target/hyper/hyper_decoder/layers_1/encoder_decoder_attention/key/kernel",
            ),
            (
                "hyper.hyper_decoder.block.1.layer.1.DenseReluDense.wo.weight",
                "target/hyper/hyper_decoder/layers_1/mlp/wo/kernel",
            ),
            (
                "hyper.component_embedding",
                "target/hyper/component_embedding",
            ),
            (
                "hyper.adapter_down.wi.weight",
                "target/hyper/adapter_down/wi/kernel",
            ),
            (
                "hyper.prefix_key_norm.weight",
                "target/hyper/prefix_key_norm/scale",
            ),
        ] {
            assert_eq!(to_t5x(hint), t5x, "{hint}");
        }
    }

    /// The hyper-decoder's sublayers carry the same t5x names as the decoder's, which is
    /// what lets HyperTune's map `(.*)/(hyper/hyper_decoder|decoder)/(.*)` → `\1/decoder/\3`
    /// start one from the other.
    #[test]
    fn the_hyper_decoder_and_the_decoder_share_t5x_names_below_their_root() {
        let strip = |name: &str, root: &str| to_t5x(name).replacen(root, "", 1);
        assert_eq!(
            strip(
                "hyper.hyper_decoder.block.0.layer.0.EncDecAttention.q.weight",
                "target/hyper/hyper_decoder"
            ),
            strip(
                "decoder.block.0.layer.1.EncDecAttention.q.weight",
                "target/decoder"
            )
        );
        assert_eq!(
            strip(
                "hyper.hyper_encoder.block.0.layer.1.layer_norm.weight",
                "target/hyper/hyper_encoder"
            ),
            strip(
                "encoder.block.0.layer.1.layer_norm.weight",
                "target/encoder"
            )
        );
    }
}
