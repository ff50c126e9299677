//! TensorBoard event files for a run's scalars, so that `tensorboard --logdir MODEL_DIR`
//! shows the same curves as `metrics.jsonl`.
//!
//! Written here rather than with a crate: the only Rust TensorBoard writer
//! (`tensorboard-rs`) has been unmaintained since 2022 and pulls protobuf 2 (with a
//! published advisory) and an old `image`. Scalars need little: TFRecord framing (length,
//! masked CRC-32C of the length, payload, masked CRC-32C of the payload) around `Event`
//! protocol buffers with a `Summary` of `(tag, simple_value)` pairs, which this module
//! encodes by hand.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{io_error, Result};

/// TFRecord's CRC mask (`crc32c.py`'s `_MASK_DELTA`).
const MASK_DELTA: u32 = 0xa282_ead8;

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(MASK_DELTA)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One `Event`: wall time, step, and either the file version or a summary of scalars.
fn encode_event(
    wall_time: f64,
    step: i64,
    file_version: Option<&str>,
    scalars: &[(&str, f32)],
) -> Vec<u8> {
    let mut event = Vec::new();
    event.push(1 << 3 | 1); // wall_time: double
    event.extend_from_slice(&wall_time.to_le_bytes());
    event.push(2 << 3); // step: int64 varint
    put_varint(&mut event, step as u64);
    if let Some(version) = file_version {
        put_bytes(&mut event, 3, version.as_bytes());
    }
    if !scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            v.push(2 << 3 | 5); // simple_value: float
            v.extend_from_slice(&value.to_le_bytes());
            put_bytes(&mut summary, 1, &v);
        }
        put_bytes(&mut event, 5, &summary);
    }
    event
}

/// Appends scalar events to `events.out.tfevents.<time>.hint` in a folder.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates a new event file in `dir` (one per training session, as TensorBoard's own
    /// writers do; TensorBoard merges the files of a folder).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut name = format!("events.out.tfevents.{}.hint", now.as_secs());
        let mut n = 1;
        while dir.join(&name).exists() {
            name = format!("events.out.tfevents.{}.hint.{n}", now.as_secs());
            n += 1;
        }
        let path = dir.join(name);
        let file = File::create(&path).map_err(io_error(&path))?;
        let mut writer = Self {
            path,
            file: BufWriter::new(file),
        };
        writer.record(&encode_event(
            now.as_secs_f64(),
            0,
            Some("brain.Event:2"),
            &[],
        ))?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let length = (data.len() as u64).to_le_bytes();
        let mut frame = Vec::with_capacity(data.len() + 16);
        frame.extend_from_slice(&length);
        frame.extend_from_slice(&masked_crc(&length).to_le_bytes());
        frame.extend_from_slice(data);
        frame.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&frame)
            .and_then(|_| self.file.flush())
            .map_err(io_error(&self.path))
    }

    /// Writes scalars of one step (one event, flushed).
    pub fn scalars(&mut self, step: u64, scalars: &[(&str, f32)]) -> Result<()> {
        let wall_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.record(&encode_event(wall_time, step as i64, None, scalars))
    }
}

/// Reads the scalars of an event file back: `(step, tag, value)` in file order. Checks
/// every CRC; used by tests and by `hint plot`-style tools.
pub fn read_scalars(path: &Path) -> Result<Vec<(i64, String, f32)>> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let bad = |message: &str| crate::TrainError::Malformed {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad("truncated record header"))?;
        let length = u64::from_le_bytes(header[..8].try_into().unwrap_or_default()) as usize;
        if masked_crc(&header[..8]).to_le_bytes() != header[8..12] {
            return Err(bad("length CRC mismatch"));
        }
        let data = bytes
            .get(at + 12..at + 12 + length)
            .ok_or_else(|| bad("truncated record"))?;
        let crc = bytes
            .get(at + 12 + length..at + 16 + length)
            .ok_or_else(|| bad("truncated record CRC"))?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(bad("data CRC mismatch"));
        }
        decode_event(data, &mut out).map_err(|m| bad(&m))?;
        at += 16 + length;
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or("truncated field")?;
        self.at += n;
        Ok(slice)
    }

    /// `(field, wire type, payload)` of the next field; varints come back as 8 LE bytes.
    fn field(&mut self) -> std::result::Result<(u64, u64, Vec<u8>), String> {
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        let payload = match wire {
            0 => self.varint()?.to_le_bytes().to_vec(),
            1 => self.take(8)?.to_vec(),
            2 => {
                let n = self.varint()? as usize;
                self.take(n)?.to_vec()
            }
            5 => self.take(4)?.to_vec(),
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((field, wire, payload))
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

fn decode_event(data: &[u8], out: &mut Vec<(i64, String, f32)>) -> std::result::Result<(), String> {
    let mut event = Reader { bytes: data, at: 0 };
    let mut step = 0i64;
    let mut values = Vec::new();
    while !event.done() {
        let (field, _, payload) = event.field()?;
        match field {
            2 => step = i64::from_le_bytes(payload.try_into().map_err(|_| "bad step")?),
            5 => {
                let mut summary = Reader {
                    bytes: &payload,
                    at: 0,
                };
                while !summary.done() {
                    let (f, _, value) = summary.field()?;
                    if f != 1 {
                        continue;
                    }
                    let mut value_reader = Reader {
                        bytes: &value,
                        at: 0,
                    };
                    let (mut tag, mut simple) = (String::new(), None);
                    while !value_reader.done() {
                        let (vf, wire, payload) = value_reader.field()?;
                        match (vf, wire) {
                            (1, 2) => tag = String::from_utf8_lossy(&payload).into_owned(),
                            (2, 5) => {
                                simple = Some(f32::from_le_bytes(
                                    payload.try_into().map_err(|_| "bad float")?,
                                ))
                            }
                            _ => {}
                        }
                    }
                    if let Some(v) = simple {
                        values.push((tag, v));
                    }
                }
            }
            _ => {}
        }
    }
    out.extend(values.into_iter().map(|(tag, v)| (step, tag, v)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_mask_matches_tensorflow() {
        // TensorFlow's crc32c_test: crc32c("123456789") = 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // Masked as crc32c.py does: ((crc >> 15) | (crc << 17)) + 0xa282ead8, mod 2^32.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn scalars_round_trip_through_the_event_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        writer
            .scalars(
                10,
                &[("train/loss", 2.5), ("train/learning_rate/hyper", 1e-3)],
            )
            .unwrap();
        writer
            .scalars(300, &[("eval/seen/exact_match", 42.0)])
            .unwrap();
        let path = writer.path().to_path_buf();
        drop(writer);
        let scalars = read_scalars(&path).unwrap();
        assert_eq!(
            scalars,
            vec![
                (10, "train/loss".to_string(), 2.5),
                (10, "train/learning_rate/hyper".to_string(), 1e-3),
                (300, "eval/seen/exact_match".to_string(), 42.0),
            ]
        );
        // A flipped byte is caught by the CRC.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_scalars(&path).unwrap_err().to_string().contains("CRC"));
    }

    /// An event file written by TensorBoard's own `tf.summary`-free writer
    /// (`tensorboard.summary.writer.event_file_writer`, see scripts/tensorboard_golden.py).
    #[test]
    fn reads_an_event_file_written_by_tensorboard() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tensorboard/events.out.tfevents.golden"
        ));
        let scalars = read_scalars(path).unwrap();
        assert_eq!(
            scalars,
            vec![
                (1, "train/loss".to_string(), 3.25),
                (2, "train/loss".to_string(), 2.75),
                (2, "eval/seen/exact_match".to_string(), 12.5),
            ]
        );
    }
}
