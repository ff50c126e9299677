use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, ListArray, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

fn read_all(format: Format, path: &Path) -> Vec<Result<Record, DataError>> {
    format.open_file(path).unwrap().collect()
}

fn examples(items: Vec<Result<Record, DataError>>) -> Vec<Example> {
    items.into_iter().map(|r| r.unwrap().example).collect()
}

#[test]
fn jsonl_maps_json_types_to_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.jsonl",
        "{\"text\": \"hi\", \"n\": 3, \"x\": 0.5, \"ok\": true, \"refs\": [\"a\", \"b\"], \"ids\": [5, 1], \"gone\": null}\n\n{\"text\": \"second\"}\n",
    );
    let records = read_all(Format::JsonLines, &path);
    assert_eq!(records.len(), 2);
    let first = records[0].as_ref().unwrap();
    assert_eq!(first.position, Position::Line(1));
    let e = &first.example;
    assert_eq!(e["text"], FeatureValue::from("hi"));
    assert_eq!(e["n"], FeatureValue::Int(3));
    assert_eq!(e["x"], FeatureValue::Float(0.5));
    assert_eq!(e["ok"], FeatureValue::Int(1));
    assert_eq!(e["refs"], FeatureValue::Texts(vec!["a".into(), "b".into()]));
    assert_eq!(e["ids"], FeatureValue::Tokens(vec![5, 1]));
    assert!(!e.contains_key("gone"));
    assert_eq!(records[1].as_ref().unwrap().position, Position::Line(3));
}

#[test]
fn a_malformed_line_names_file_and_line_and_reading_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.jsonl",
        "{\"text\": \"ok\"}\n{\"text\": oops}\n{\"text\": {\"nested\": 1}}\n{\"text\": \"fine\"}\n",
    );
    let records = read_all(Format::JsonLines, &path);
    assert_eq!(records.len(), 4);
    let err = records[1].as_ref().unwrap_err().to_string();
    assert!(err.contains("bad.jsonl line 2"), "{err}");
    assert!(err.contains("malformed JSON"), "{err}");
    let err = records[2].as_ref().unwrap_err();
    assert!(err.to_string().contains("line 3, field `text`"), "{err}");
    assert_eq!(
        records[3].as_ref().unwrap().example["text"],
        FeatureValue::from("fine")
    );
}

#[test]
fn required_fields_are_checked_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "r.jsonl",
        "{\"inputs\": \"a\", \"targets\": \"b\"}\n{\"inputs\": 4, \"targets\": \"b\"}\n{\"targets\": \"b\"}\n",
    );
    let source = FileSource::new(Format::JsonLines)
        .split("train", vec![path])
        .require("inputs", FieldKind::Text)
        .require("targets", FieldKind::Text);
    let items: Vec<_> = source
        .open("train", &OpenOptions::default())
        .unwrap()
        .collect();
    assert!(items[0].is_ok());
    let wrong = items[1].as_ref().unwrap_err().to_string();
    assert!(
        wrong.contains("r.jsonl line 2, field `inputs`: expected Text, found an integer"),
        "{wrong}"
    );
    let missing = items[2].as_ref().unwrap_err().to_string();
    assert!(
        missing.contains("line 3, field `inputs`: missing"),
        "{missing}"
    );

    let skipped = Arc::new(AtomicU64::new(0));
    let kept: Vec<_> = skip_bad_records(
        source.open("train", &OpenOptions::default()).unwrap(),
        true,
        Arc::clone(&skipped),
    )
    .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(skipped.load(Ordering::Relaxed), 2);
}

#[test]
fn json_arrays_stream_element_by_element() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.json",
        "[\n  {\"text\": \"a ] , [ } {\", \"n\": 1},\n  {\"text\": \"esc \\\" ]\", \"list\": [[1]]},\n  {\"text\": \"c\"}\n]\n",
    );
    let records = read_all(Format::JsonArray, &path);
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0].as_ref().unwrap().example["text"],
        FeatureValue::from("a ] , [ } {")
    );
    let second = records[1].as_ref().unwrap_err().to_string();
    assert!(
        second.contains("element 1 (line 3), field `list`"),
        "{second}"
    );
    let third = records[2].as_ref().unwrap();
    assert_eq!(third.example["text"], FeatureValue::from("c"));
    assert_eq!(third.position, Position::Element { index: 2, line: 4 });

    let empty = write(dir.path(), "e.json", " [ ] ");
    assert!(read_all(Format::JsonArray, &empty).is_empty());
    let broken = write(dir.path(), "b.json", "{\"text\": 1}");
    let err = read_all(Format::JsonArray, &broken);
    assert_eq!(err.len(), 1);
    assert!(err[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("expected `[`"));
    let scalar = write(dir.path(), "s.json", "[1, {\"a\": \"b\"}]");
    let items = read_all(Format::JsonArray, &scalar);
    assert!(items[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("expected a JSON object"));
    assert_eq!(
        items[1].as_ref().unwrap().example["a"],
        FeatureValue::from("b")
    );
}

#[test]
fn text_lines_skip_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.txt", "first line\r\n\n  \nsecond\n");
    let got = examples(read_all(
        Format::TextLines {
            field: "text".into(),
        },
        &path,
    ));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["text"], FeatureValue::from("second"));
}

fn p3_batch() -> RecordBatch {
    let ints = |rows: &[&[i32]]| -> ArrayRef {
        let values: Vec<i32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Arc::new(ListArray::new(
            Arc::new(Field::new("item", DataType::Int32, true)),
            OffsetBuffer::from_lengths(rows.iter().map(|r| r.len())),
            Arc::new(Int32Array::from(values)),
            None,
        ))
    };
    let choices: ArrayRef = Arc::new(ListArray::new(
        Arc::new(Field::new("item", DataType::Utf8, true)),
        OffsetBuffer::from_lengths([2, 2]),
        Arc::new(StringArray::from(vec!["yes", "no", "yes", "no"])),
        None,
    ));
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "inputs",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("inputs_pretokenized", DataType::Utf8, true),
        Field::new(
            "targets",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
        Field::new("targets_pretokenized", DataType::Utf8, true),
        Field::new(
            "answer_choices",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            ints(&[&[37, 629], &[19]]),
            Arc::new(StringArray::from(vec!["Is it? ", "Really?"])),
            ints(&[&[4273, 1], &[150, 1]]),
            Arc::new(StringArray::from(vec![" yes", " no"])),
            choices,
        ],
    )
    .unwrap()
}

#[test]
fn p3_parquet_layout_reads_with_rows_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train-00000-of-00001.parquet");
    write_parquet(&path, &p3_batch());
    let records = read_all(Format::Parquet, &path);
    assert_eq!(records.len(), 2);
    let second = records[1].as_ref().unwrap();
    assert_eq!(second.position, Position::Row(1));
    assert_eq!(second.example["inputs"], FeatureValue::Tokens(vec![19]));
    assert_eq!(
        second.example["targets"],
        FeatureValue::Tokens(vec![150, 1])
    );
    assert_eq!(
        second.example["targets_pretokenized"],
        FeatureValue::from(" no")
    );
    assert_eq!(
        second.example["answer_choices"],
        FeatureValue::Texts(vec!["yes".into(), "no".into()])
    );
    let source =
        FileSource::new(Format::Parquet).split("train", vec![dir.path().join("train-*.parquet")]);
    assert_eq!(source.num_input_examples("train"), Some(2));

    let not_parquet = write(dir.path(), "x.parquet", "nope");
    let err = ParquetReader::open(&not_parquet).unwrap_err().to_string();
    assert!(err.contains("x.parquet"), "{err}");
}

#[test]
fn arrow_ipc_file_and_stream_formats_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let batch = p3_batch();
    let file_path = dir.path().join("data.arrow");
    let mut writer = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(&file_path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    // Hugging Face `save_to_disk` writes the stream format (`data-00000-of-00001.arrow`).
    let stream_path = dir.path().join("data-00000-of-00001.arrow");
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&stream_path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    let from_file = examples(read_all(Format::Arrow, &file_path));
    let from_stream = examples(read_all(Format::Arrow, &stream_path));
    assert_eq!(from_file.len(), 2);
    assert_eq!(from_stream.len(), 4);
    assert_eq!(from_file[..], from_stream[..2]);
    let rows: Vec<Position> = read_all(Format::Arrow, &stream_path)
        .into_iter()
        .map(|r| r.unwrap().position)
        .collect();
    assert_eq!(rows[3], Position::Row(3));
}

#[test]
fn shards_split_files_or_records_without_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for f in 0..3 {
        let lines: String = (0..5)
            .map(|i| format!("{{\"id\": {}}}\n", f * 5 + i))
            .collect();
        files.push(write(dir.path(), &format!("part-{f}.jsonl"), &lines));
    }
    let source =
        FileSource::new(Format::JsonLines).split("train", vec![dir.path().join("part-*.jsonl")]);
    let ids = |shard: ShardInfo| -> Vec<i64> {
        source
            .open(
                "train",
                &OpenOptions {
                    shard,
                    shuffle_files_seed: None,
                },
            )
            .unwrap()
            .map(|r| match r.unwrap().example["id"] {
                FeatureValue::Int(i) => i,
                _ => -1,
            })
            .collect()
    };
    for num_shards in [2, 3, 4] {
        let mut all: Vec<i64> = (0..num_shards)
            .flat_map(|index| ids(ShardInfo { index, num_shards }))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..15).collect::<Vec<_>>(), "{num_shards} shards");
    }
    assert_eq!(
        ids(ShardInfo {
            index: 1,
            num_shards: 3
        }),
        (5..10).collect::<Vec<_>>()
    );
    assert!(source
        .open(
            "train",
            &OpenOptions {
                shard: ShardInfo {
                    index: 3,
                    num_shards: 3
                },
                shuffle_files_seed: None
            }
        )
        .is_err());
    let missing =
        FileSource::new(Format::JsonLines).split("train", vec![dir.path().join("nothing-*.jsonl")]);
    assert!(missing.open("train", &OpenOptions::default()).is_err());
}

#[test]
fn formats_are_guessed_from_extensions() {
    assert_eq!(
        Format::from_path(Path::new("a.jsonl")),
        Some(Format::JsonLines)
    );
    assert_eq!(
        Format::from_path(Path::new("a.json")),
        Some(Format::JsonArray)
    );
    assert_eq!(
        Format::from_path(Path::new("a.parquet")),
        Some(Format::Parquet)
    );
    assert_eq!(
        Format::from_path(Path::new("data-00000-of-00001.arrow")),
        Some(Format::Arrow)
    );
    assert_eq!(Format::from_path(Path::new("a.csv")), None);
}

#[test]
fn a_source_by_extension_reads_each_file_in_its_own_format() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.parquet");
    write_parquet(&train, &p3_batch());
    let validation = write(dir.path(), "validation.jsonl", "{\"inputs\": \"a\"}\n");
    let source = FileSource::by_extension()
        .split("train", vec![train])
        .split("validation", vec![validation]);
    let read = |split: &str| -> Vec<Example> {
        examples(
            source
                .open(split, &OpenOptions::default())
                .unwrap()
                .collect(),
        )
    };
    assert_eq!(read("train").len(), 2);
    assert_eq!(read("validation")[0]["inputs"], FeatureValue::from("a"));
    assert_eq!(source.num_input_examples("train"), Some(2));
    assert_eq!(source.num_input_examples("validation"), None);

    let odd = write(dir.path(), "notes.csv", "a,b\n");
    let err = FileSource::by_extension()
        .split("train", vec![odd])
        .open("train", &OpenOptions::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("notes.csv") && err.contains("extension"),
        "{err}"
    );
}
