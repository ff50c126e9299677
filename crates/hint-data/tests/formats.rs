//! The same examples stored as JSON Lines, a JSON array, Parquet and Arrow IPC (file and
//! stream format) give identical batches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, ListArray, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use hint_data::feature_converter::HintConverter;
use hint_data::preprocessors::{HintSplit, Template, Tokenize};
use hint_data::{
    toy_vocabulary, Batch, BatchIterator, DatasetConfig, Feature, FileSource, Format, Task,
    TaskRegistry,
};

const N: usize = 37;

/// (definition, input, output, references, id).
type Row = (String, String, String, Vec<String>, i64);

fn rows() -> Vec<Row> {
    (0..N)
        .map(|i| {
            let input: Vec<String> = (0..(i % 5 + 2))
                .map(|j| ((i * 7 + j * 3) % 10).to_string())
                .collect();
            let mut output = input.clone();
            output.reverse();
            (
                if i % 2 == 0 {
                    "reverse the list ."
                } else {
                    "reverse it ."
                }
                .to_string(),
                input.join(" "),
                output.join(" "),
                vec![output.join(" "), input.join(" ")],
                i as i64,
            )
        })
        .collect()
}

fn write_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("data.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (d, i, o, refs, id) in rows() {
        let line = serde_json::json!({"definition": d, "input": i, "output": o, "references": refs, "id": id});
        writeln!(f, "{line}").unwrap();
    }
    path
}

fn write_json_array(dir: &Path) -> PathBuf {
    let path = dir.join("data.json");
    let items: Vec<_> = rows()
        .into_iter()
        .map(|(d, i, o, refs, id)| serde_json::json!({"definition": d, "input": i, "output": o, "references": refs, "id": id}))
        .collect();
    std::fs::write(&path, serde_json::to_string_pretty(&items).unwrap()).unwrap();
    path
}

fn record_batch() -> RecordBatch {
    let rows = rows();
    let text = |f: fn(&Row) -> &str| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let refs: ArrayRef = Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Utf8, true)),
        OffsetBuffer::from_lengths(rows.iter().map(|r| r.3.len())),
        Arc::new(StringArray::from(
            rows.iter()
                .flat_map(|r| r.3.iter().map(String::as_str))
                .collect::<Vec<_>>(),
        )),
        None,
    ));
    let schema = Arc::new(Schema::new(vec![
        Field::new("definition", DataType::Utf8, false),
        Field::new("input", DataType::Utf8, false),
        Field::new("output", DataType::Utf8, false),
        Field::new(
            "references",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("id", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            text(|r| &r.0),
            text(|r| &r.1),
            text(|r| &r.2),
            refs,
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn write_parquet(dir: &Path) -> PathBuf {
    let path = dir.join("data.parquet");
    let batch = record_batch();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    // Two row groups, to cross a group boundary.
    w.write(&batch.slice(0, 20)).unwrap();
    w.flush().unwrap();
    w.write(&batch.slice(20, N - 20)).unwrap();
    w.close().unwrap();
    path
}

fn write_arrow_file(dir: &Path) -> PathBuf {
    let path = dir.join("data.arrow");
    let batch = record_batch();
    let mut w = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    path
}

fn write_arrow_stream(dir: &Path) -> PathBuf {
    let path = dir.join("data-00000-of-00001.arrow");
    let batch = record_batch();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    w.write(&batch.slice(0, 10)).unwrap();
    w.write(&batch.slice(10, N - 10)).unwrap();
    w.finish().unwrap();
    path
}

fn batches(format: Format, path: PathBuf) -> Vec<Batch> {
    let vocab = Arc::new(toy_vocabulary().unwrap());
    let task = Task::builder(
        "reverse",
        FileSource::new(format).split("train", vec![path]),
    )
    .preprocessor(HintSplit::new("{definition}", "{input}").unwrap())
    .preprocessor(Template::new("targets", "{output}").unwrap())
    .preprocessor(Tokenize::default())
    .output_feature("inputs", Feature::new(Arc::clone(&vocab)))
    .output_feature("hyper_inputs", Feature::new(Arc::clone(&vocab)))
    .output_feature("targets", Feature::new(vocab))
    .build()
    .unwrap();
    let mut registry = TaskRegistry::new();
    registry.add_task(task).unwrap();
    let config = DatasetConfig {
        seed: 11,
        shuffle_buffer: 8,
        num_epochs: Some(2),
        batch_size: 5,
        ..DatasetConfig::default()
    };
    let converter = Arc::new(HintConverter::new(8, 6, 8));
    BatchIterator::new(&registry, "reverse", config, converter)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn every_format_gives_identical_batches() {
    let dir = tempfile::tempdir().unwrap();
    let reference = batches(Format::JsonLines, write_jsonl(dir.path()));
    assert_eq!(reference.len(), (2 * N).div_ceil(5));
    for (format, path) in [
        (Format::JsonArray, write_json_array(dir.path())),
        (Format::Parquet, write_parquet(dir.path())),
        (Format::Arrow, write_arrow_file(dir.path())),
        (Format::Arrow, write_arrow_stream(dir.path())),
    ] {
        let got = batches(format.clone(), path.clone());
        assert!(got == reference, "{format:?} {} differs", path.display());
    }
}
