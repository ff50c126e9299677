//! Parquet and Arrow IPC readers, and the conversion between Arrow record batches and
//! examples (also used by the cache writer).
//!
//! Both readers stream record batches (1024 rows at a time for Parquet; Arrow IPC batches as
//! written) and convert them column by column.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use arrow::ipc::reader::{FileReader, StreamReader};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader as _, SerializedFileReader};

use super::{kind_name, Record};
use crate::error::{DataError, Position};
use crate::example::{Example, FeatureValue};

type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>;

/// Streams the rows of record batches as records, numbering rows from 0 across batches.
struct BatchRows {
    batches: BatchIter,
    path: Arc<Path>,
    row: u64,
    pending: VecDeque<Result<Record, DataError>>,
    done: bool,
}

impl BatchRows {
    fn next_record(&mut self) -> Option<Result<Record, DataError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.batches.next() {
                None => self.done = true,
                Some(Err(message)) => {
                    self.done = true;
                    return Some(Err(DataError::Format {
                        path: self.path.to_path_buf(),
                        message,
                    }));
                }
                Some(Ok(batch)) => {
                    let first = self.row;
                    self.row += batch.num_rows() as u64;
                    let path = Arc::clone(&self.path);
                    let rows = batch_to_examples(&batch).map_err(|(row, field, message)| {
                        DataError::Record {
                            path: path.to_path_buf(),
                            position: Position::Row(first + row as u64),
                            field: Some(field),
                            message,
                        }
                    });
                    match rows {
                        Ok(examples) => self.pending.extend(examples.into_iter().enumerate().map(
                            |(i, example)| {
                                Ok(Record {
                                    example,
                                    path: Some(Arc::clone(&path)),
                                    position: Position::Row(first + i as u64),
                                })
                            },
                        )),
                        Err(err) => self.pending.push_back(Err(err)),
                    }
                }
            }
        }
    }
}

/// Streams a Parquet file (any compression the crate was built with: Snappy, Zstd).
pub struct ParquetReader(BatchRows);

impl std::fmt::Debug for ParquetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetReader")
            .field("path", &self.0.path)
            .finish_non_exhaustive()
    }
}

impl ParquetReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(1024).build())
            .map_err(|e| DataError::Format {
                path: path.to_path_buf(),
                message: format!("not a readable Parquet file: {e}"),
            })?;
        Ok(Self(BatchRows {
            batches: Box::new(reader.map(|b| b.map_err(|e| e.to_string()))),
            path: Arc::from(path),
            row: 0,
            pending: VecDeque::new(),
            done: false,
        }))
    }

    /// The number of rows, from the footer.
    pub fn num_rows(path: &Path) -> Result<u64, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            message: format!("not a readable Parquet file: {e}"),
        })?;
        Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
    }
}

impl Iterator for ParquetReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_record()
    }
}

/// Streams an Arrow IPC file: the random-access file format (starts with `ARROW1`) or the
/// stream format that Hugging Face `datasets` writes with `save_to_disk`.
pub struct ArrowReader(BatchRows);

impl std::fmt::Debug for ArrowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrowReader")
            .field("path", &self.0.path)
            .finish_non_exhaustive()
    }
}

impl ArrowReader {
    /// Opens `path`, detecting the IPC flavour from its first bytes.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let io = |e| DataError::io(path, e);
        let mut file = File::open(path).map_err(io)?;
        let mut magic = [0u8; 6];
        let is_file_format = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let format_error = |e: arrow::error::ArrowError| DataError::Format {
            path: path.to_path_buf(),
            message: format!("not a readable Arrow IPC file: {e}"),
        };
        let batches: BatchIter = if is_file_format {
            let reader = FileReader::try_new(BufReader::new(file), None).map_err(format_error)?;
            Box::new(reader.map(|b| b.map_err(|e| e.to_string())))
        } else {
            let reader = StreamReader::try_new(BufReader::with_capacity(1 << 20, file), None)
                .map_err(format_error)?;
            Box::new(reader.map(|b| b.map_err(|e| e.to_string())))
        };
        Ok(Self(BatchRows {
            batches,
            path: Arc::from(path),
            row: 0,
            pending: VecDeque::new(),
            done: false,
        }))
    }
}

impl Iterator for ArrowReader {
    type Item = Result<Record, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_record()
    }
}

/// A conversion failure: (row within the batch, field, message).
type CellError = (usize, String, String);

/// Converts every row of `batch` to an example; nulls leave the field out.
pub(crate) fn batch_to_examples(batch: &RecordBatch) -> Result<Vec<Example>, CellError> {
    let mut examples = vec![Example::new(); batch.num_rows()];
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        let values =
            column_values(column).map_err(|(row, message)| (row, name.clone(), message))?;
        for (example, value) in examples.iter_mut().zip(values) {
            if let Some(value) = value {
                example.insert(name.clone(), value);
            }
        }
    }
    Ok(examples)
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_integer(data_type: &DataType) -> bool {
    data_type.is_integer()
}

/// Converts one column; errors carry the row.
fn column_values(column: &ArrayRef) -> Result<Vec<Option<FeatureValue>>, (usize, String)> {
    let n = column.len();
    let data_type = column.data_type();
    let cast_to = |to: &DataType| cast(column, to).map_err(|e| (0, e.to_string()));
    let present = |i: usize| column.is_valid(i);
    if is_string(data_type) {
        let strings = cast_to(&DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        return Ok((0..n)
            .map(|i| present(i).then(|| FeatureValue::Text(strings.value(i).to_string())))
            .collect());
    }
    if is_integer(data_type) || *data_type == DataType::Boolean {
        let ints = cast_to(&DataType::Int64)?;
        let ints = ints.as_primitive::<Int64Type>();
        return Ok((0..n)
            .map(|i| present(i).then(|| FeatureValue::Int(ints.value(i))))
            .collect());
    }
    if data_type.is_floating() {
        let floats = cast_to(&DataType::Float64)?;
        let floats = floats.as_primitive::<Float64Type>();
        return Ok((0..n)
            .map(|i| present(i).then(|| FeatureValue::Float(floats.value(i))))
            .collect());
    }
    let list = match data_type {
        DataType::List(_) => column.as_list::<i32>().clone(),
        DataType::LargeList(item) | DataType::FixedSizeList(item, _) | DataType::ListView(item) => {
            cast(column, &DataType::List(Arc::clone(item)))
                .map_err(|e| (0, e.to_string()))?
                .as_list::<i32>()
                .clone()
        }
        DataType::Null => return Ok(vec![None; n]),
        other => return Err((0, format!("unsupported Arrow type {other}"))),
    };
    list_values(&list)
}

fn list_values(list: &ListArray) -> Result<Vec<Option<FeatureValue>>, (usize, String)> {
    let offsets = list.value_offsets();
    let values = list.values();
    let item_type = values.data_type();
    let range = |i: usize| offsets[i] as usize..offsets[i + 1] as usize;
    if is_string(item_type) {
        let strings = cast(values, &DataType::Utf8).map_err(|e| (0, e.to_string()))?;
        let strings = strings.as_string::<i32>();
        return (0..list.len())
            .map(|i| {
                if list.is_null(i) {
                    return Ok(None);
                }
                range(i)
                    .map(|j| {
                        if strings.is_null(j) {
                            Err((i, "null inside a list of texts".to_string()))
                        } else {
                            Ok(strings.value(j).to_string())
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|t| Some(FeatureValue::Texts(t)))
            })
            .collect();
    }
    if is_integer(item_type) || *item_type == DataType::Boolean {
        let ints = cast(values, &DataType::Int64).map_err(|e| (0, e.to_string()))?;
        let ints = ints.as_primitive::<Int64Type>();
        let raw = ints.values();
        return (0..list.len())
            .map(|i| {
                if list.is_null(i) {
                    return Ok(None);
                }
                raw[range(i)]
                    .iter()
                    .map(|&t| {
                        u32::try_from(t).map_err(|_| (i, format!("token id {t} is not a valid id")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|t| Some(FeatureValue::Tokens(t)))
            })
            .collect();
    }
    if *item_type == DataType::Null {
        return Ok((0..list.len())
            .map(|i| list.is_valid(i).then(|| FeatureValue::Texts(Vec::new())))
            .collect());
    }
    Err((0, format!("unsupported list item type {item_type}")))
}

/// The Arrow type each example value is stored as (token ids as int32, like seqio caches).
pub(crate) fn arrow_type(value: &FeatureValue) -> DataType {
    match value {
        FeatureValue::Int(_) => DataType::Int64,
        FeatureValue::Float(_) => DataType::Float64,
        FeatureValue::Text(_) => DataType::Utf8,
        FeatureValue::Texts(_) => {
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        }
        FeatureValue::Tokens(_) => {
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))
        }
    }
}

/// A schema for examples shaped like `example` (all fields nullable).
pub(crate) fn schema_of(example: &Example) -> Schema {
    Schema::new(
        example
            .iter()
            .map(|(name, value)| Field::new(name, arrow_type(value), true))
            .collect::<Vec<_>>(),
    )
}

/// Builds a record batch from examples; a field of another type than the schema's is an
/// error naming the example index and field.
pub(crate) fn examples_to_batch(
    examples: &[Example],
    schema: &SchemaRef,
) -> Result<RecordBatch, CellError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let wrong = |i: usize, v: &FeatureValue| {
            (
                i,
                name.clone(),
                format!("expected {}, found {}", field.data_type(), kind_name(v)),
            )
        };
        let column: ArrayRef = match field.data_type() {
            DataType::Int64 => {
                let mut out = Vec::with_capacity(examples.len());
                for (i, e) in examples.iter().enumerate() {
                    out.push(match e.get(name) {
                        None => None,
                        Some(FeatureValue::Int(x)) => Some(*x),
                        Some(v) => return Err(wrong(i, v)),
                    });
                }
                Arc::new(Int64Array::from(out))
            }
            DataType::Float64 => {
                let mut out = Vec::with_capacity(examples.len());
                for (i, e) in examples.iter().enumerate() {
                    out.push(match e.get(name) {
                        None => None,
                        Some(FeatureValue::Float(x)) => Some(*x),
                        Some(FeatureValue::Int(x)) => Some(*x as f64),
                        Some(v) => return Err(wrong(i, v)),
                    });
                }
                Arc::new(Float64Array::from(out))
            }
            DataType::Boolean => {
                let mut out = Vec::with_capacity(examples.len());
                for (i, e) in examples.iter().enumerate() {
                    out.push(match e.get(name) {
                        None => None,
                        Some(FeatureValue::Int(x)) => Some(*x != 0),
                        Some(v) => return Err(wrong(i, v)),
                    });
                }
                Arc::new(BooleanArray::from(out))
            }
            DataType::Utf8 => {
                let mut out = Vec::with_capacity(examples.len());
                for (i, e) in examples.iter().enumerate() {
                    out.push(match e.get(name) {
                        None => None,
                        Some(FeatureValue::Text(x)) => Some(x.as_str()),
                        Some(v) => return Err(wrong(i, v)),
                    });
                }
                Arc::new(StringArray::from(out))
            }
            DataType::List(item) if *item.data_type() == DataType::Int32 => {
                let mut lengths = Vec::with_capacity(examples.len());
                let mut nulls = Vec::with_capacity(examples.len());
                let mut values: Vec<i32> = Vec::new();
                for (i, e) in examples.iter().enumerate() {
                    match e.get(name) {
                        None => {
                            lengths.push(0);
                            nulls.push(false);
                        }
                        Some(FeatureValue::Tokens(t)) => {
                            lengths.push(t.len());
                            nulls.push(true);
                            // Ids above i32::MAX do not exist in any vocabulary.
                            values.extend(t.iter().map(|&x| x as i32));
                        }
                        Some(v) => return Err(wrong(i, v)),
                    }
                }
                Arc::new(ListArray::new(
                    Arc::clone(item),
                    OffsetBuffer::from_lengths(lengths),
                    Arc::new(Int32Array::from(values)),
                    Some(nulls.into()),
                ))
            }
            DataType::List(item) if *item.data_type() == DataType::Utf8 => {
                let mut lengths = Vec::with_capacity(examples.len());
                let mut nulls = Vec::with_capacity(examples.len());
                let mut values: Vec<&str> = Vec::new();
                for (i, e) in examples.iter().enumerate() {
                    match e.get(name) {
                        None => {
                            lengths.push(0);
                            nulls.push(false);
                        }
                        Some(FeatureValue::Texts(t)) => {
                            lengths.push(t.len());
                            nulls.push(true);
                            values.extend(t.iter().map(String::as_str));
                        }
                        Some(v) => return Err(wrong(i, v)),
                    }
                }
                Arc::new(ListArray::new(
                    Arc::clone(item),
                    OffsetBuffer::from_lengths(lengths),
                    Arc::new(StringArray::from(values)),
                    Some(nulls.into()),
                ))
            }
            other => {
                return Err((0, name.clone(), format!("cannot write Arrow type {other}")));
            }
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| (0, String::new(), e.to_string()))
}
