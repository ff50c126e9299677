//! Operations on a [`TaskAdaptation`]: gathering rows (deduplicated training batches) and
//! saving/loading as safetensors, so that a served task no longer needs the hypernetwork.

use std::path::Path;

use tch::{Device, Tensor};

use crate::t5::adaptation::{
    Adapter, AttentionAdaptation, LayerAdaptation, LoraDelta, Prefix, ProjectedMemory,
    StackAdaptation,
};
use crate::ModelError;

use super::model::TaskAdaptation;

const PROJECTIONS: [&str; 4] = ["q", "k", "v", "o"];

/// Applies `rows` to a tensor with a row dimension, leaving broadcast (size-1) tensors alone
/// unless every row is the same one.
fn map_attention(a: &AttentionAdaptation, rows: &dyn Fn(&Tensor) -> Tensor) -> AttentionAdaptation {
    AttentionAdaptation {
        prefix: a.prefix.as_ref().map(|p| Prefix {
            key: rows(&p.key),
            value: rows(&p.value),
            gate: p.gate.as_ref().map(Tensor::shallow_clone),
        }),
        lora: std::array::from_fn(|i| {
            a.lora[i].as_ref().map(|l| LoraDelta {
                a: rows(&l.a),
                b: rows(&l.b),
                scale: l.scale,
            })
        }),
        projected_memory: a.projected_memory.as_ref().map(|m| ProjectedMemory {
            key: rows(&m.key),
            value: rows(&m.value),
        }),
        ia3_key: a.ia3_key.as_ref().map(rows),
        ia3_value: a.ia3_value.as_ref().map(rows),
    }
}

fn map_stack(stack: &StackAdaptation, rows: &dyn Fn(&Tensor) -> Tensor) -> StackAdaptation {
    StackAdaptation {
        layers: stack
            .layers
            .iter()
            .map(|layer| LayerAdaptation {
                self_attention: map_attention(&layer.self_attention, rows),
                cross_attention: map_attention(&layer.cross_attention, rows),
                adapter: layer.adapter.as_ref().map(|a| Adapter {
                    down: rows(&a.down),
                    down_bias: rows(&a.down_bias),
                    up: rows(&a.up),
                    up_bias: rows(&a.up_bias),
                }),
                ia3_feed_forward: layer.ia3_feed_forward.as_ref().map(rows),
            })
            .collect(),
    }
}

/// A stack's row tensors, in the order [`map_stack`] visits them.
fn tensors_of(stack: &StackAdaptation) -> Vec<Tensor> {
    let collected = std::cell::RefCell::new(Vec::new());
    map_stack(stack, &|t: &Tensor| {
        collected.borrow_mut().push(t.shallow_clone());
        t.shallow_clone()
    });
    collected.into_inner()
}

fn attention_tensors(prefix: &str, a: &AttentionAdaptation, out: &mut Vec<(String, Tensor)>) {
    if let Some(p) = &a.prefix {
        out.push((format!("{prefix}.prefix.key"), p.key.shallow_clone()));
        out.push((format!("{prefix}.prefix.value"), p.value.shallow_clone()));
        if let Some(gate) = &p.gate {
            out.push((format!("{prefix}.prefix.gate"), gate.shallow_clone()));
        }
    }
    for (i, lora) in a.lora.iter().enumerate() {
        if let Some(l) = lora {
            let name = format!("{prefix}.lora.{}", PROJECTIONS[i]);
            out.push((format!("{name}.a"), l.a.shallow_clone()));
            out.push((format!("{name}.b"), l.b.shallow_clone()));
            out.push((format!("{name}.scale"), Tensor::from_slice(&[l.scale])));
        }
    }
    if let Some(key) = &a.ia3_key {
        out.push((format!("{prefix}.ia3.key"), key.shallow_clone()));
    }
    if let Some(value) = &a.ia3_value {
        out.push((format!("{prefix}.ia3.value"), value.shallow_clone()));
    }
    if let Some(m) = &a.projected_memory {
        out.push((
            format!("{prefix}.projected_memory.key"),
            m.key.shallow_clone(),
        ));
        out.push((
            format!("{prefix}.projected_memory.value"),
            m.value.shallow_clone(),
        ));
    }
}

/// Zero-pads tensors of the same rank to the largest size in every dimension but the
/// first (rows): only encoded instructions (states, mask, projected keys and values)
/// differ, in length. Tensors already of that size are not copied.
fn pad_to_largest(tensors: Vec<&Tensor>) -> Vec<Tensor> {
    let sizes: Vec<Vec<i64>> = tensors.iter().map(|t| t.size()).collect();
    let largest: Vec<i64> = (0..sizes[0].len())
        .map(|d| sizes.iter().map(|s| s[d]).max().unwrap_or(0))
        .collect();
    tensors
        .iter()
        .zip(&sizes)
        .map(|(t, size)| {
            if size[1..] == largest[1..] {
                return t.shallow_clone();
            }
            // `constant_pad_nd` takes (before, after) pairs from the last dimension back.
            let pads: Vec<i64> = (1..size.len())
                .rev()
                .flat_map(|d| [0, largest[d] - size[d]])
                .collect();
            t.constant_pad_nd(pads.as_slice())
        })
        .collect()
}

impl TaskAdaptation {
    /// Whether the fused instruction's cross-attention keys and values are projected
    /// ([`crate::HyperT5::project_instruction`]).
    pub fn has_projected_instruction(&self) -> bool {
        self.decoder
            .layers
            .first()
            .is_some_and(|l| l.cross_attention.projected_memory.is_some())
    }

    /// The rows `index` (e.g. the inverse of a deduplication), in order.
    pub fn select_rows(&self, index: &Tensor) -> Self {
        let rows = self.rows;
        let select = |t: &Tensor| {
            if t.size()[0] == rows {
                t.index_select(0, index)
            } else {
                t.shallow_clone()
            }
        };
        let mut selected = self.map_tensors(&select);
        selected.rows = index.size()[0];
        selected
    }

    /// This adaptation with `f` applied to every tensor (rows unchanged).
    fn map_tensors(&self, f: &dyn Fn(&Tensor) -> Tensor) -> Self {
        Self {
            encoder: map_stack(&self.encoder, f),
            decoder: map_stack(&self.decoder, f),
            instruction: self.instruction.as_ref().map(|(s, m)| (f(s), f(m))),
            prompt: self.prompt.as_ref().map(f),
            rows: self.rows,
        }
    }

    /// Rows picked from several tasks' adaptations (of one model) as one adaptation:
    /// row `r` of the result is row `picks[r].1` of `parts[picks[r].0]`. A batch that
    /// mixes tasks gives each example its own task's row this way. Each tensor is copied
    /// once, straight into its place (twice for a shorter instruction's, padded first):
    /// joining the parts first and gathering the rows after would copy every tensor
    /// twice, and a server joins a fused instruction's keys and values (megabytes per
    /// task) for every batch. Encoded instructions of
    /// different lengths, and their projected keys and values, are zero-padded to the
    /// longest; the instruction mask, padded alike, hides the padding.
    ///
    /// # Panics
    /// When `parts` or `picks` is empty, a pick is out of range, or the parts have
    /// different structures (another model's).
    pub fn gather(parts: &[&TaskAdaptation], picks: &[(usize, i64)]) -> Self {
        assert!(!parts.is_empty() && !picks.is_empty(), "nothing to gather");
        for &(part, row) in picks {
            assert!(
                part < parts.len() && (0..parts[part].rows).contains(&row),
                "gathering row {row} of part {part} from {} parts",
                parts.len()
            );
        }
        let first = parts[0];
        // One column per tensor place (in the order `row_tensors` lists them), one entry
        // per part; each column padded to its longest, then its picked rows joined.
        let per_part: Vec<Vec<Tensor>> = parts.iter().map(|p| p.row_tensors()).collect();
        let joined: Vec<Tensor> = (0..per_part[0].len())
            .map(|i| {
                let column = pad_to_largest(per_part.iter().map(|v| &v[i]).collect());
                let rows: Vec<Tensor> = picks
                    .iter()
                    .map(|&(part, row)| {
                        let tensor = &column[part];
                        if tensor.size()[0] == 1 {
                            tensor.shallow_clone()
                        } else {
                            tensor.narrow(0, row, 1)
                        }
                    })
                    .collect();
                Tensor::cat(&rows, 0)
            })
            .collect();
        let mut adaptation = first.with_row_tensors(joined);
        adaptation.rows = picks.len() as i64;
        adaptation
    }

    /// Every tensor with a row dimension: the encoder's and decoder's (in the order
    /// [`map_stack`] visits them), the instruction's states and mask, the prompt.
    fn row_tensors(&self) -> Vec<Tensor> {
        let mut tensors = tensors_of(&self.encoder);
        tensors.extend(tensors_of(&self.decoder));
        if let Some((states, mask)) = &self.instruction {
            tensors.extend([states.shallow_clone(), mask.shallow_clone()]);
        }
        tensors.extend(self.prompt.as_ref().map(Tensor::shallow_clone));
        tensors
    }

    /// This adaptation's structure over `tensors`, listed as [`TaskAdaptation::row_tensors`]
    /// lists them (rows unchanged).
    ///
    /// # Panics
    /// When `tensors` does not match that list.
    fn with_row_tensors(&self, tensors: Vec<Tensor>) -> Self {
        let next = std::cell::RefCell::new(tensors.into_iter());
        let take = |_: &Tensor| {
            next.borrow_mut()
                .next()
                .expect("parts of one model have the same structure")
        };
        let encoder = map_stack(&self.encoder, &take);
        let decoder = map_stack(&self.decoder, &take);
        let instruction = self
            .instruction
            .as_ref()
            .map(|(states, mask)| (take(states), take(mask)));
        let prompt = self.prompt.as_ref().map(take);
        assert!(
            next.borrow_mut().next().is_none(),
            "parts of one model have the same structure"
        );
        Self {
            encoder,
            decoder,
            instruction,
            prompt,
            rows: self.rows,
        }
    }

    /// A one-row adaptation made among longer instructions (padded at the end to the
    /// longest) cut to its own instruction's length, the ones of its mask: the encoded
    /// instruction and its projected keys and values lose the padding's positions (and
    /// bytes), which the mask hid. An adaptation without an instruction, or without
    /// padding, comes back as it is.
    ///
    /// # Panics
    /// When the adaptation has more than one row.
    pub fn without_instruction_padding(&self) -> Self {
        assert_eq!(
            self.rows, 1,
            "cutting the instruction padding of several rows"
        );
        let mut cut = self.map_tensors(&Tensor::shallow_clone);
        let Some((states, mask)) = &self.instruction else {
            return cut;
        };
        let len = i64::try_from(mask.sum(tch::Kind::Int64)).unwrap_or(0);
        if len == states.size()[1] {
            return cut;
        }
        // Copies, so that the padded tensors are freed.
        let shorten = |t: &Tensor, dim: i64| t.narrow(dim, 0, len).copy();
        cut.instruction = Some((shorten(states, 1), shorten(mask, 1)));
        for layer in &mut cut.decoder.layers {
            if let Some(memory) = &mut layer.cross_attention.projected_memory {
                memory.key = shorten(&memory.key, 2);
                memory.value = shorten(&memory.value, 2);
            }
        }
        cut
    }

    /// Detaches every tensor (a served adaptation needs no graph).
    pub fn detach(&self) -> Self {
        self.map_tensors(&Tensor::detach)
    }

    /// Named tensors, as written by [`TaskAdaptation::save`].
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("rows".to_string(), Tensor::from_slice(&[self.rows]))];
        for (stack_name, stack) in [("encoder", &self.encoder), ("decoder", &self.decoder)] {
            for (i, layer) in stack.layers.iter().enumerate() {
                let base = format!("{stack_name}.{i}");
                attention_tensors(
                    &format!("{base}.self_attention"),
                    &layer.self_attention,
                    &mut out,
                );
                attention_tensors(
                    &format!("{base}.cross_attention"),
                    &layer.cross_attention,
                    &mut out,
                );
                if let Some(a) = &layer.adapter {
                    out.push((format!("{base}.adapter.down"), a.down.shallow_clone()));
                    out.push((
                        format!("{base}.adapter.down_bias"),
                        a.down_bias.shallow_clone(),
                    ));
                    out.push((format!("{base}.adapter.up"), a.up.shallow_clone()));
                    out.push((format!("{base}.adapter.up_bias"), a.up_bias.shallow_clone()));
                }
                if let Some(scale) = &layer.ia3_feed_forward {
                    out.push((format!("{base}.ia3.feed_forward"), scale.shallow_clone()));
                }
            }
        }
        if let Some((states, mask)) = &self.instruction {
            out.push(("instruction.states".into(), states.shallow_clone()));
            out.push(("instruction.mask".into(), mask.shallow_clone()));
        }
        if let Some(prompt) = &self.prompt {
            out.push(("prompt".into(), prompt.shallow_clone()));
        }
        out
    }

    /// Writes the adaptation as safetensors (under a temporary name, then renamed).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let tensors: Vec<(String, Tensor)> = self
            .named_tensors()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous()))
            .collect();
        crate::parameters::write_safetensors_atomically(&tensors, path)
    }

    /// Reads an adaptation written by [`TaskAdaptation::save`] onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self, ModelError> {
        let tensors = Tensor::read_safetensors(path).map_err(|source| ModelError::Torch {
            context: format!("reading {}", path.display()),
            source,
        })?;
        let malformed = |what: String| ModelError::Config {
            path: path.to_path_buf(),
            message: what,
        };
        let mut adaptation = Self {
            encoder: StackAdaptation::default(),
            decoder: StackAdaptation::default(),
            instruction: None,
            prompt: None,
            rows: 1,
        };
        let mut instruction_states = None;
        let mut instruction_mask = None;
        for (name, tensor) in tensors {
            let tensor = tensor.to_device(device);
            let parts: Vec<&str> = name.split('.').collect();
            match parts.as_slice() {
                ["rows"] => {
                    adaptation.rows =
                        i64::try_from(&tensor).map_err(|e| malformed(format!("rows: {e}")))?
                }
                ["instruction", "states"] => instruction_states = Some(tensor),
                ["instruction", "mask"] => instruction_mask = Some(tensor),
                ["prompt"] => adaptation.prompt = Some(tensor),
                [stack, layer, rest @ ..] => {
                    let stack = match *stack {
                        "encoder" => &mut adaptation.encoder,
                        "decoder" => &mut adaptation.decoder,
                        other => {
                            return Err(malformed(format!("unknown stack `{other}` in `{name}`")))
                        }
                    };
                    let index: usize = layer
                        .parse()
                        .map_err(|_| malformed(format!("bad layer index in `{name}`")))?;
                    if stack.layers.len() <= index {
                        stack
                            .layers
                            .resize_with(index + 1, LayerAdaptation::default);
                    }
                    place(&mut stack.layers[index], rest, tensor)
                        .map_err(|what| malformed(format!("`{name}`: {what}")))?;
                }
                _ => return Err(malformed(format!("unknown tensor `{name}`"))),
            }
        }
        adaptation.instruction = match (instruction_states, instruction_mask) {
            (Some(s), Some(m)) => Some((s, m)),
            (None, None) => None,
            _ => {
                return Err(malformed(
                    "instruction states without mask, or the reverse".into(),
                ))
            }
        };
        Ok(adaptation)
    }
}

/// Puts one tensor into its place in a layer; partial adapters are completed by later tensors.
fn place(layer: &mut LayerAdaptation, rest: &[&str], tensor: Tensor) -> Result<(), String> {
    let placeholder = || Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
    match rest {
        ["adapter", part] => {
            let adapter = layer.adapter.get_or_insert_with(|| Adapter {
                down: placeholder(),
                down_bias: placeholder(),
                up: placeholder(),
                up_bias: placeholder(),
            });
            match *part {
                "down" => adapter.down = tensor,
                "down_bias" => adapter.down_bias = tensor,
                "up" => adapter.up = tensor,
                "up_bias" => adapter.up_bias = tensor,
                other => return Err(format!("unknown adapter part `{other}`")),
            }
        }
        ["ia3", "feed_forward"] => layer.ia3_feed_forward = Some(tensor),
        [attention, kind, rest @ ..] => {
            let target = match *attention {
                "self_attention" => &mut layer.self_attention,
                "cross_attention" => &mut layer.cross_attention,
                other => return Err(format!("unknown attention `{other}`")),
            };
            match (*kind, rest) {
                ("prefix", [part]) => {
                    let prefix = target.prefix.get_or_insert_with(|| Prefix {
                        key: placeholder(),
                        value: placeholder(),
                        gate: None,
                    });
                    match *part {
                        "key" => prefix.key = tensor,
                        "value" => prefix.value = tensor,
                        "gate" => prefix.gate = Some(tensor),
                        other => return Err(format!("unknown prefix part `{other}`")),
                    }
                }
                ("ia3", ["key"]) => target.ia3_key = Some(tensor),
                ("ia3", ["value"]) => target.ia3_value = Some(tensor),
                ("projected_memory", [part]) => {
                    let projected =
                        target
                            .projected_memory
                            .get_or_insert_with(|| ProjectedMemory {
                                key: placeholder(),
                                value: placeholder(),
                            });
                    match *part {
                        "key" => projected.key = tensor,
                        "value" => projected.value = tensor,
                        other => return Err(format!("unknown projected memory part `{other}`")),
                    }
                }
                ("lora", [projection, part]) => {
                    let i = PROJECTIONS
                        .iter()
                        .position(|p| p == projection)
                        .ok_or_else(|| format!("unknown projection `{projection}`"))?;
                    let lora = target.lora[i].get_or_insert_with(|| LoraDelta {
                        a: placeholder(),
                        b: placeholder(),
                        scale: 1.0,
                    });
                    match *part {
                        "a" => lora.a = tensor,
                        "b" => lora.b = tensor,
                        "scale" => {
                            lora.scale = f64::try_from(&tensor).map_err(|e| e.to_string())?
                        }
                        other => return Err(format!("unknown LoRA part `{other}`")),
                    }
                }
                _ => return Err("unknown attention tensor".into()),
            }
        }
        _ => return Err("unknown layer tensor".into()),
    }
    Ok(())
}
