//! Every real BIG-bench task in `HINT_SHARED_DATA/bigbench` loads, and the plain-words
//! instruction is extracted from all 200 `list_functions` tasks.

use hint_data::bigbench::{
    hold_out_examples, list_functions_split, load_all, to_examples, BigBenchTarget,
    ListFunctionsSplit, HELD_OUT_PER_TRAIN_TASK,
};

fn root() -> String {
    let shared =
        std::env::var("HINT_SHARED_DATA").expect("HINT_SHARED_DATA must be set for this test");
    format!("{shared}/bigbench")
}

#[test]
#[ignore = "needs HINT_SHARED_DATA (set by .ci/run)"]
fn every_real_task_loads() {
    let tasks = load_all(root()).unwrap();
    assert_eq!(tasks.len(), 205, "200 list_functions + 5 others");
    for t in &tasks {
        assert!(!t.examples.is_empty(), "{}", t.id);
        assert!(!t.instruction().is_empty(), "{}", t.id);
    }
    let ws = tasks.iter().find(|t| t.id == "word_sorting").unwrap();
    assert_eq!(ws.examples.len(), 1900);
    assert_eq!(ws.instruction(), "Sort the following words alphabetically:");
    assert_eq!(ws.output_prefix(), "\nSorted: ");
    let vp = tasks
        .iter()
        .find(|t| t.id == "cs_algorithms/valid_parentheses")
        .unwrap();
    assert!(matches!(vp.examples[0].target, BigBenchTarget::Scores(_)));
    assert_eq!(vp.examples[0].references(), vec!["Invalid"]);
}

#[test]
#[ignore = "needs HINT_SHARED_DATA (set by .ci/run)"]
fn list_functions_instructions_for_all_200() {
    let tasks = load_all(format!("{}/list_functions", root())).unwrap();
    let mut numbers = Vec::new();
    for t in &tasks {
        let n = t.list_function_number().expect("cNNN name");
        numbers.push(n);
        assert_eq!(t.id, t.name);
        let f = hint_data::bigbench::list_function_instruction(&t.description)
            .unwrap_or_else(|| panic!("no instruction in {}", t.id));
        assert!(!f.contains('"'), "{}: {f}", t.id);
        assert_eq!(t.instruction(), f);
        assert_eq!(t.examples.len(), 32, "{}", t.id);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=200).collect::<Vec<u32>>());
    let by = |id: &str| tasks.iter().find(|t| t.id == id).unwrap();
    assert_eq!(by("c001").instruction(), "remove all but element 3");
    assert_eq!(by("c050").instruction(), "prepend element 1");
    assert_eq!(
        by("c150").instruction(),
        "count from element 1 up to each element, in order of appearance"
    );

    let train: Vec<_> = tasks
        .iter()
        .filter(|t| {
            list_functions_split(t.list_function_number().unwrap()) == ListFunctionsSplit::Train
        })
        .collect();
    assert_eq!(train.len(), 160);
    let c001 = by("c001");
    let (kept, held) = hold_out_examples(c001, HELD_OUT_PER_TRAIN_TASK, 0);
    assert_eq!((kept.len(), held.len()), (24, 8));
    let ex = to_examples(c001, &held, &kept, 2, 0);
    assert_eq!(ex.len(), 8);
    let hyper = ex[0]["hyper_inputs"].as_text().unwrap();
    assert!(
        hyper.ends_with("Definition: remove all but element 3"),
        "{hyper}"
    );
}

#[test]
#[ignore = "needs HINT_SHARED_DATA (set by .ci/run)"]
fn registry_builder_makes_tasks_and_mixtures() {
    use hint_data::bigbench::{register_bigbench, BigBenchOptions};
    let vocab = hint_data::builtin::builtin_vocabulary().unwrap();
    let mut registry = hint_data::TaskRegistry::new();
    let names = register_bigbench(
        &mut registry,
        &BigBenchOptions {
            path: root().into(),
            shots: 2,
            suffix_shots: true,
            seed: 0,
        },
        vocab,
        (64, 256, 32).into(),
    )
    .unwrap();
    assert_eq!(names.len(), 205);
    assert_eq!(
        registry
            .mixture("bigbench_list_functions_train_2shot")
            .unwrap()
            .members
            .len(),
        160
    );
    assert_eq!(
        registry
            .mixture("bigbench_list_functions_unseen_2shot")
            .unwrap()
            .members
            .len(),
        40
    );
    let task = registry.task("bigbench_list_functions_c001_2shot").unwrap();
    let held: Vec<_> = task
        .open("validation", &Default::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(held.len(), 8);
    let hyper = held[0]["hyper_inputs_pretokenized"].as_text().unwrap();
    assert!(
        hyper.ends_with("Definition: remove all but element 3"),
        "{hyper}"
    );
    // Evaluation encodes a task's demonstrations once: the same for every instance.
    assert!(held
        .iter()
        .all(|e| e["hyper_inputs_pretokenized"].as_text() == Some(hyper)));
    let unseen = registry.task("bigbench_list_functions_c200_2shot").unwrap();
    assert_eq!(unseen.splits(), vec!["test".to_string()]);
    let test: Vec<_> = unseen
        .open("test", &Default::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(test.len(), 32 - 4, "4 examples are the demonstration pool");
    let demos = test[0]["hyper_inputs_pretokenized"].as_text().unwrap();
    for example in &test {
        let input = example["inputs_pretokenized"].as_text().unwrap();
        assert!(
            !demos.contains(&format!("Input: {input}\n")),
            "an evaluated example is among the demonstrations"
        );
    }
}
