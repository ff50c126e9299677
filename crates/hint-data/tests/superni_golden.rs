//! The Tk-Instruct template and HINT's variants on two tasks of the Super-NI fixture
//! (`tests/data/superni`, written in the Super-NI format because `HINT_SHARED_DATA` has no
//! Super-NI checkout). The expected strings are derived by hand from the reference template
//! (`data.md` §3.1–3.2); the first one is the `task063` rendering printed there verbatim.

use hint_data::superni::{
    sample_train_instances, test_instances, tk_instruct_source, tk_instruct_source_with_budget,
    to_examples, SuperNiCheckout, SuperNiVariant, TkInstructConfig,
};
use hint_data::FeatureValue;

fn checkout() -> SuperNiCheckout {
    SuperNiCheckout::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/superni")).unwrap()
}

const DEF063: &str = "In this task, you are given inputs i and A, where i is an integer and A is a list. You need to output the first i elements of A, starting with the 1st element in A. i will always have a value less than the length of A";
const EX1_IN: &str = "3, ['a', '34', 'f', '931', '7', '3432', '13245', '762']";
const EX2_IN: &str =
    "6, ['5191', '9389', '9907', '8877', 'N', '6453', 's', 'k', '6209', 'W', '4591', 'B', 'p']";
const INST_IN: &str = "2, ['n', 'f', 'V', 'a', '4729', '1347']";

#[test]
fn split_lists_and_task_loading() {
    let c = checkout();
    let split = c.split("default").unwrap();
    assert_eq!(split.train, vec!["task063_first_i_elements"]);
    assert_eq!(split.test, vec!["task1331_reverse_array"]);
    let t = c.task("task1331_reverse_array").unwrap();
    assert_eq!(t.number(), Some(1331));
    assert_eq!(t.instances[1].output, vec!["em esrever", "me reverse"]);
    assert!(c.task("task999_missing").is_err());
}

#[test]
fn task063_def_plus_two_positive_examples_matches_data_md() {
    let task = checkout().task("task063_first_i_elements").unwrap();
    let source = tk_instruct_source(
        &task,
        &task.instances[0].input,
        &TkInstructConfig::DEF_POS_2,
    );
    // data.md §3.1, "Rendered Def + 2 Pos source for task063_first_i_elements".
    let expected = "Definition: In this task, you are given inputs i and A, where i is an integer and A is a list. You need to output the first i elements of A, starting with the 1st element in A. i will always have a value less than the length of A.\n\n Positive Example 1 -\nInput: 3, ['a', '34', 'f', '931', '7', '3432', '13245', '762']\n Output: a, 34, f.\n\n Positive Example 2 -\nInput: 6, ['5191', '9389', '9907', '8877', 'N', '6453', 's', 'k', '6209', 'W', '4591', 'B', 'p']\n Output: 5191, 9389, 9907, 8877, N, 6453.\n\nNow complete the following example -\nInput: 2, ['n', 'f', 'V', 'a', '4729', '1347']\nOutput: ";
    assert_eq!(source, expected);
}

#[test]
fn task1331_name_negatives_and_explanations() {
    let task = checkout().task("task1331_reverse_array").unwrap();
    let config = TkInstructConfig {
        add_task_name: true,
        add_task_definition: true,
        num_pos_examples: 2,
        num_neg_examples: 1,
        add_explanation: true,
    };
    let source = tk_instruct_source(&task, &task.instances[1].input, &config);
    // By hand: task name + ". "; the definition stripped (it already ends with "."); example
    // inputs/outputs stripped, "." added unless they end in ASCII punctuation (the lists end
    // in "]"); the negative output "1, 2, 3" gets a "."; the instance "reverse me" gets one.
    let expected = concat!(
        "task1331_reverse_array. ",
        "Definition: In this task, you are given a list of integers. You need to reverse the order of the list.\n\n",
        " Positive Example 1 -\nInput: [1, 45, 67, 43, 58, 98, 41, 34, 57]\n Output: [57, 34, 41, 98, 58, 43, 67, 45, 1]\n Explanation: The output list is the input list in reverse order.\n\n",
        " Positive Example 2 -\nInput: [5, 4, 3]\n Output: [3, 4, 5]\n Explanation: Reversed.\n\n",
        " Negative Example 1 -\nInput: [1, 2, 3]\n Output: 1, 2, 3.\n Explanation: The output is not reversed and is missing the brackets.\n\n",
        "Now complete the following example -\nInput: reverse me.\nOutput: ",
    );
    assert_eq!(source, expected);

    // Definition only, no examples (tk_instruct's "def only" encoding).
    let def_only = tk_instruct_source(&task, " [3, 2] ", &TkInstructConfig::def_pos(0));
    assert_eq!(
        def_only,
        "Definition: In this task, you are given a list of integers. You need to reverse the order of the list.\n\nNow complete the following example -\nInput: [3, 2]\nOutput: "
    );
}

#[test]
fn budget_stops_adding_examples() {
    let task = checkout().task("task063_first_i_elements").unwrap();
    let words = |s: &str| s.split_whitespace().count();
    let full = tk_instruct_source(&task, INST_IN, &TkInstructConfig::DEF_POS_2);
    let one_example_budget = words(&full) - 5;
    let source = tk_instruct_source_with_budget(
        &task,
        INST_IN,
        &TkInstructConfig::DEF_POS_2,
        words,
        one_example_budget,
    );
    assert!(source.contains(" Positive Example 1 -"));
    assert!(!source.contains(" Positive Example 2 -"));
}

#[test]
fn hint_variants() {
    let task = checkout().task("task063_first_i_elements").unwrap();
    let none = |_: &str| 0;
    let (inputs, hyper) = SuperNiVariant::HintDef.render(&task, INST_IN, none, usize::MAX);
    assert_eq!(inputs, INST_IN);
    assert_eq!(hyper, DEF063);

    let (inputs, hyper) = SuperNiVariant::HintPos(2).render(&task, INST_IN, none, usize::MAX);
    assert_eq!(inputs, INST_IN);
    let ex1 = format!(" Positive Example 1 -\nInput: {EX1_IN}\n Output: a, 34, f.\n");
    let ex2 = format!(
        " Positive Example 2 -\nInput: {EX2_IN}\n Output: 5191, 9389, 9907, 8877, N, 6453.\n"
    );
    assert_eq!(hyper, format!("{ex2}{ex1}Definition: {DEF063}"));

    let (inputs, hyper) = SuperNiVariant::TkDefPos(0).render(&task, INST_IN, none, usize::MAX);
    assert_eq!(
        inputs,
        format!("Definition: {DEF063}.\n\nNow complete the following example -\nInput: {INST_IN}\nOutput:")
    );
    assert_eq!(hyper, DEF063);

    let (inputs, hyper) = SuperNiVariant::SplitMimicDef.render(&task, INST_IN, none, usize::MAX);
    assert_eq!(
        inputs,
        format!("Now complete the following example -\nInput: {INST_IN}\nOutput: ")
    );
    assert_eq!(hyper, format!("Definition: {DEF063}.\n\n"));
    let (baseline, _) = SuperNiVariant::TkDefPos(0).render(&task, INST_IN, none, usize::MAX);
    assert_eq!(format!("{hyper}{inputs}").trim(), baseline);
}

#[test]
fn examples_carry_references_and_task_numbers() {
    let task = checkout().task("task1331_reverse_array").unwrap();
    let train = sample_train_instances(&task, 100, 42);
    assert_eq!(train.len(), 2);
    let test = test_instances(&task, 100);
    let examples = to_examples(&task, &test, SuperNiVariant::HintPos(1), 42);
    assert_eq!(examples.len(), 2);
    assert_eq!(
        examples[1]["references"],
        FeatureValue::Texts(vec!["em esrever".into(), "me reverse".into()])
    );
    let target = examples[1]["targets"].as_text().unwrap();
    assert!(target == "em esrever" || target == "me reverse");
    assert_eq!(examples[0]["task_names"], FeatureValue::Int(1331));
    assert!(examples[0]["hyper_inputs"]
        .as_text()
        .unwrap()
        .starts_with(" Positive Example 1 -\nInput: [1, 45"));
}
