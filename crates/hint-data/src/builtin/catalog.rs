//! The catalog of built-in tasks: for each, its input format, its instructions (several
//! wordings, so the model learns the meaning rather than one string) and the function that
//! computes the references.
//!
//! Many tasks share an input format — a list of numbers can be reversed, sorted, summed,
//! filtered — so only the instruction tells the model what to do. Held-out tasks are
//! relatives of training tasks (last two vs first two, min vs max, shortest vs longest…).

use super::input::{Input, InputFormat};

/// Computes the references (one or more acceptable outputs) of an input.
pub type Solver = fn(&Input) -> Vec<String>;

/// One built-in task.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinTaskSpec {
    /// The task name (`builtin_` is prefixed when registered).
    pub name: &'static str,
    /// What its inputs look like.
    pub format: InputFormat,
    /// Differently worded instructions; the first is the task's definition.
    pub instructions: &'static [&'static str],
    /// Whether the task is held out of training.
    pub held_out: bool,
    /// The reference function.
    pub solve: Solver,
}

fn one(s: impl ToString) -> Vec<String> {
    vec![s.to_string()]
}

fn join_numbers(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
}

fn nums(input: &Input) -> &[i64] {
    match input {
        Input::Numbers(v) => v,
        _ => &[],
    }
}

fn words(input: &Input) -> &[String] {
    match input {
        Input::Words(v) => v,
        _ => &[],
    }
}

fn word(input: &Input) -> &str {
    match input {
        Input::Word(w) => w,
        _ => "",
    }
}

fn pair(input: &Input) -> (i64, i64) {
    match input {
        Input::Pair(a, b) => (*a, *b),
        _ => (0, 0),
    }
}

fn number(input: &Input) -> i64 {
    match input {
        Input::Number(n) => *n,
        _ => 0,
    }
}

fn map_numbers(input: &Input, f: impl Fn(i64) -> i64) -> Vec<String> {
    one(join_numbers(
        &nums(input).iter().map(|&x| f(x)).collect::<Vec<_>>(),
    ))
}

fn filter_numbers(input: &Input, keep: impl Fn(i64) -> bool) -> Vec<String> {
    let kept: Vec<i64> = nums(input).iter().copied().filter(|&x| keep(x)).collect();
    // An empty result is written as "none", so that the target is never empty.
    if kept.is_empty() {
        one("none")
    } else {
        one(join_numbers(&kept))
    }
}

/// All words of extreme length (ties give several references, in input order, deduplicated).
fn words_by_length(input: &Input, longest: bool) -> Vec<String> {
    let w = words(input);
    let target = if longest {
        w.iter().map(String::len).max()
    } else {
        w.iter().map(String::len).min()
    };
    let mut out: Vec<String> = Vec::new();
    for x in w {
        if Some(x.len()) == target && !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

const NUMBER_WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// Every built-in task, training tasks first.
pub const CATALOG: &[BuiltinTaskSpec] = &[
    // ---- lists of numbers (training) ----
    BuiltinTaskSpec {
        name: "numbers_reverse",
        format: InputFormat::Numbers,
        instructions: &[
            "Reverse the order of the numbers in the list.",
            "Write the list backwards, starting from the last number.",
            "Output the same numbers in the opposite order.",
        ],
        held_out: false,
        solve: |i| {
            let mut v = nums(i).to_vec();
            v.reverse();
            one(join_numbers(&v))
        },
    },
    BuiltinTaskSpec {
        name: "numbers_sort_ascending",
        format: InputFormat::Numbers,
        instructions: &[
            "Sort the numbers from smallest to largest.",
            "Arrange the list in increasing order.",
            "Put the numbers in ascending order.",
        ],
        held_out: false,
        solve: |i| {
            let mut v = nums(i).to_vec();
            v.sort_unstable();
            one(join_numbers(&v))
        },
    },
    BuiltinTaskSpec {
        name: "numbers_sort_descending",
        format: InputFormat::Numbers,
        instructions: &[
            "Sort the numbers from largest to smallest.",
            "Arrange the list in decreasing order.",
            "Put the numbers in descending order, biggest first.",
        ],
        held_out: false,
        solve: |i| {
            let mut v = nums(i).to_vec();
            v.sort_unstable_by(|a, b| b.cmp(a));
            one(join_numbers(&v))
        },
    },
    BuiltinTaskSpec {
        name: "numbers_sum",
        format: InputFormat::Numbers,
        instructions: &[
            "Add up all the numbers in the list.",
            "What is the total of these numbers?",
            "Compute the sum of the list.",
        ],
        held_out: false,
        solve: |i| one(nums(i).iter().sum::<i64>()),
    },
    BuiltinTaskSpec {
        name: "numbers_max",
        format: InputFormat::Numbers,
        instructions: &[
            "Find the largest number in the list.",
            "Which number is the biggest?",
            "Output the maximum of the list.",
        ],
        held_out: false,
        solve: |i| one(nums(i).iter().max().copied().unwrap_or(0)),
    },
    BuiltinTaskSpec {
        name: "numbers_min",
        format: InputFormat::Numbers,
        instructions: &[
            "Find the smallest number in the list.",
            "Which number is the lowest?",
            "Output the minimum of the list.",
        ],
        held_out: false,
        solve: |i| one(nums(i).iter().min().copied().unwrap_or(0)),
    },
    BuiltinTaskSpec {
        name: "numbers_first",
        format: InputFormat::Numbers,
        instructions: &[
            "Output the first number of the list.",
            "Which number comes first?",
            "Give the number at the start of the list.",
        ],
        held_out: false,
        solve: |i| one(nums(i).first().copied().unwrap_or(0)),
    },
    BuiltinTaskSpec {
        name: "numbers_last",
        format: InputFormat::Numbers,
        instructions: &[
            "Output the last number of the list.",
            "Which number comes at the end?",
            "Give the final number in the list.",
        ],
        held_out: false,
        solve: |i| one(nums(i).last().copied().unwrap_or(0)),
    },
    BuiltinTaskSpec {
        name: "numbers_count",
        format: InputFormat::Numbers,
        instructions: &[
            "How many numbers are in the list?",
            "Count the numbers in the list.",
            "Output the length of the list.",
        ],
        held_out: false,
        solve: |i| one(nums(i).len()),
    },
    BuiltinTaskSpec {
        name: "numbers_keep_even",
        format: InputFormat::Numbers,
        instructions: &[
            "Keep only the even numbers, in their original order.",
            "Remove every odd number from the list.",
            "Output the numbers that are divisible by two; write none if there are none.",
        ],
        held_out: false,
        solve: |i| filter_numbers(i, |x| x % 2 == 0),
    },
    BuiltinTaskSpec {
        name: "numbers_keep_odd",
        format: InputFormat::Numbers,
        instructions: &[
            "Keep only the odd numbers, in their original order.",
            "Remove every even number from the list.",
            "Output the numbers that are not divisible by two; write none if there are none.",
        ],
        held_out: false,
        solve: |i| filter_numbers(i, |x| x % 2 != 0),
    },
    BuiltinTaskSpec {
        name: "numbers_double",
        format: InputFormat::Numbers,
        instructions: &[
            "Multiply every number by two.",
            "Double each number in the list.",
            "Replace each number with twice its value.",
        ],
        held_out: false,
        solve: |i| map_numbers(i, |x| 2 * x),
    },
    BuiltinTaskSpec {
        name: "numbers_add_one",
        format: InputFormat::Numbers,
        instructions: &[
            "Add one to every number in the list.",
            "Increase each number by 1.",
            "Replace each number with the number that follows it.",
        ],
        held_out: false,
        solve: |i| map_numbers(i, |x| x + 1),
    },
    BuiltinTaskSpec {
        name: "numbers_first_two",
        format: InputFormat::Numbers,
        instructions: &[
            "Output the first two numbers of the list.",
            "Keep only the two numbers at the start.",
            "Remove everything except the first 2 numbers.",
        ],
        held_out: false,
        solve: |i| one(join_numbers(&nums(i)[..nums(i).len().min(2)])),
    },
    BuiltinTaskSpec {
        name: "numbers_drop_first",
        format: InputFormat::Numbers,
        instructions: &[
            "Remove the first number from the list.",
            "Output every number except the first one.",
            "Delete the number at the start of the list.",
        ],
        held_out: false,
        solve: |i| one(join_numbers(nums(i).get(1..).unwrap_or(&[]))),
    },
    BuiltinTaskSpec {
        name: "numbers_keep_above_50",
        format: InputFormat::Numbers,
        instructions: &[
            "Keep only the numbers greater than 50.",
            "Remove every number that is 50 or less.",
            "Output the numbers above fifty; write none if there are none.",
        ],
        held_out: false,
        solve: |i| filter_numbers(i, |x| x > 50),
    },
    // ---- lists of words (training) ----
    BuiltinTaskSpec {
        name: "words_reverse",
        format: InputFormat::Words,
        instructions: &[
            "Reverse the order of the words.",
            "Write the words backwards, starting from the last word.",
            "Output the same words in the opposite order.",
        ],
        held_out: false,
        solve: |i| {
            let mut v = words(i).to_vec();
            v.reverse();
            one(v.join(" "))
        },
    },
    BuiltinTaskSpec {
        name: "words_sort",
        format: InputFormat::Words,
        instructions: &[
            "Sort the words alphabetically.",
            "Arrange the words in dictionary order.",
            "Put the words in alphabetical order from a to z.",
        ],
        held_out: false,
        solve: |i| {
            let mut v = words(i).to_vec();
            v.sort();
            one(v.join(" "))
        },
    },
    BuiltinTaskSpec {
        name: "words_first",
        format: InputFormat::Words,
        instructions: &[
            "Output the first word.",
            "Which word comes first?",
            "Give the word at the start of the list.",
        ],
        held_out: false,
        solve: |i| one(words(i).first().cloned().unwrap_or_default()),
    },
    BuiltinTaskSpec {
        name: "words_last",
        format: InputFormat::Words,
        instructions: &[
            "Output the last word.",
            "Which word comes at the end?",
            "Give the final word of the list.",
        ],
        held_out: false,
        solve: |i| one(words(i).last().cloned().unwrap_or_default()),
    },
    BuiltinTaskSpec {
        name: "words_count",
        format: InputFormat::Words,
        instructions: &[
            "How many words are there?",
            "Count the words.",
            "Output the number of words in the list.",
        ],
        held_out: false,
        solve: |i| one(words(i).len()),
    },
    BuiltinTaskSpec {
        name: "words_uppercase",
        format: InputFormat::Words,
        instructions: &[
            "Write every word in capital letters.",
            "Convert all the words to uppercase.",
            "Output the words with every letter capitalized.",
        ],
        held_out: false,
        solve: |i| one(words(i).join(" ").to_uppercase()),
    },
    BuiltinTaskSpec {
        name: "words_initials",
        format: InputFormat::Words,
        instructions: &[
            "Output the first letter of each word.",
            "Write the initial of every word, separated by spaces.",
            "For each word, keep only its first letter.",
        ],
        held_out: false,
        solve: |i| {
            let v: Vec<String> = words(i)
                .iter()
                .filter_map(|w| w.chars().next())
                .map(String::from)
                .collect();
            one(v.join(" "))
        },
    },
    BuiltinTaskSpec {
        name: "words_longest",
        format: InputFormat::Words,
        instructions: &[
            "Find the longest word.",
            "Which word has the most letters?",
            "Output the word with the greatest length.",
        ],
        held_out: false,
        solve: |i| words_by_length(i, true),
    },
    // ---- single words (training) ----
    BuiltinTaskSpec {
        name: "word_reverse",
        format: InputFormat::Word,
        instructions: &[
            "Spell the word backwards.",
            "Reverse the letters of the word.",
            "Write the word from its last letter to its first.",
        ],
        held_out: false,
        solve: |i| one(word(i).chars().rev().collect::<String>()),
    },
    BuiltinTaskSpec {
        name: "word_uppercase",
        format: InputFormat::Word,
        instructions: &[
            "Write the word in capital letters.",
            "Convert the word to uppercase.",
            "Capitalize every letter of the word.",
        ],
        held_out: false,
        solve: |i| one(word(i).to_uppercase()),
    },
    BuiltinTaskSpec {
        name: "word_first_letter",
        format: InputFormat::Word,
        instructions: &[
            "Output the first letter of the word.",
            "Which letter does the word start with?",
            "Give the initial letter of the word.",
        ],
        held_out: false,
        solve: |i| one(word(i).chars().next().map(String::from).unwrap_or_default()),
    },
    BuiltinTaskSpec {
        name: "word_last_letter",
        format: InputFormat::Word,
        instructions: &[
            "Output the last letter of the word.",
            "Which letter does the word end with?",
            "Give the final letter of the word.",
        ],
        held_out: false,
        solve: |i| one(word(i).chars().last().map(String::from).unwrap_or_default()),
    },
    BuiltinTaskSpec {
        name: "word_length",
        format: InputFormat::Word,
        instructions: &[
            "How many letters does the word have?",
            "Count the letters in the word.",
            "Output the length of the word.",
        ],
        held_out: false,
        solve: |i| one(word(i).chars().count()),
    },
    BuiltinTaskSpec {
        name: "word_spell",
        format: InputFormat::Word,
        instructions: &[
            "Spell the word with a space between letters.",
            "Write each letter of the word separately.",
            "Split the word into its letters.",
        ],
        held_out: false,
        solve: |i| {
            let v: Vec<String> = word(i).chars().map(String::from).collect();
            one(v.join(" "))
        },
    },
    BuiltinTaskSpec {
        name: "word_repeat",
        format: InputFormat::Word,
        instructions: &[
            "Write the word twice.",
            "Repeat the word two times.",
            "Say the word and then say it again.",
        ],
        held_out: false,
        solve: |i| one(format!("{0} {0}", word(i))),
    },
    BuiltinTaskSpec {
        name: "word_remove_vowels",
        format: InputFormat::Word,
        instructions: &[
            "Remove the vowels from the word.",
            "Delete every a, e, i, o and u in the word.",
            "Write the word using only its consonants.",
        ],
        held_out: false,
        solve: |i| {
            let s: String = word(i).chars().filter(|&c| !is_vowel(c)).collect();
            one(if s.is_empty() { "none".to_string() } else { s })
        },
    },
    // ---- pairs of numbers (training) ----
    BuiltinTaskSpec {
        name: "pair_add",
        format: InputFormat::Pair,
        instructions: &[
            "Add the two numbers.",
            "What is the sum of the two numbers?",
            "Compute the first number plus the second.",
        ],
        held_out: false,
        solve: |i| {
            let (a, b) = pair(i);
            one(a + b)
        },
    },
    BuiltinTaskSpec {
        name: "pair_subtract",
        format: InputFormat::Pair,
        instructions: &[
            "Subtract the second number from the first.",
            "What is the first number minus the second?",
            "Compute the difference: first number take away second number.",
        ],
        held_out: false,
        solve: |i| {
            let (a, b) = pair(i);
            one(a - b)
        },
    },
    BuiltinTaskSpec {
        name: "pair_max",
        format: InputFormat::Pair,
        instructions: &[
            "Output the larger of the two numbers.",
            "Which of the two numbers is bigger?",
            "Give the maximum of the pair.",
        ],
        held_out: false,
        solve: |i| {
            let (a, b) = pair(i);
            one(a.max(b))
        },
    },
    BuiltinTaskSpec {
        name: "pair_multiply",
        format: InputFormat::Pair,
        instructions: &[
            "Multiply the two numbers.",
            "What is the product of the two numbers?",
            "Compute the first number times the second.",
        ],
        held_out: false,
        solve: |i| {
            let (a, b) = pair(i);
            one(a * b)
        },
    },
    // ---- single numbers (training) ----
    BuiltinTaskSpec {
        name: "number_is_even",
        format: InputFormat::Number,
        instructions: &[
            "Is the number even? Answer yes or no.",
            "Answer yes if the number is divisible by two, otherwise no.",
            "Say yes for an even number and no for an odd one.",
        ],
        held_out: false,
        solve: |i| one(if number(i) % 2 == 0 { "yes" } else { "no" }),
    },
    BuiltinTaskSpec {
        name: "number_square",
        format: InputFormat::Number,
        instructions: &[
            "Multiply the number by itself.",
            "What is the square of the number?",
            "Output the number squared.",
        ],
        held_out: false,
        solve: |i| one(number(i) * number(i)),
    },
    BuiltinTaskSpec {
        name: "number_to_word",
        format: InputFormat::Number,
        instructions: &[
            "Write the number in English words.",
            "Spell out the number as a word.",
            "How is this number written in letters?",
        ],
        held_out: false,
        solve: |i| {
            let n = number(i);
            one(usize::try_from(n)
                .ok()
                .and_then(|n| NUMBER_WORDS.get(n))
                .copied()
                .map_or_else(|| n.to_string(), str::to_string))
        },
    },
    BuiltinTaskSpec {
        name: "number_add_ten",
        format: InputFormat::Number,
        instructions: &[
            "Add ten to the number.",
            "What is the number plus 10?",
            "Increase the number by ten.",
        ],
        held_out: false,
        solve: |i| one(number(i) + 10),
    },
    // ---- held-out tasks: relatives of the training tasks ----
    BuiltinTaskSpec {
        name: "numbers_last_two",
        format: InputFormat::Numbers,
        instructions: &[
            "Output the last two numbers of the list.",
            "Keep only the two numbers at the end.",
            "Remove everything except the final 2 numbers.",
        ],
        held_out: true,
        solve: |i| {
            let v = nums(i);
            one(join_numbers(&v[v.len().saturating_sub(2)..]))
        },
    },
    BuiltinTaskSpec {
        name: "numbers_drop_last",
        format: InputFormat::Numbers,
        instructions: &[
            "Remove the last number from the list.",
            "Output every number except the final one.",
            "Delete the number at the end of the list.",
        ],
        held_out: true,
        solve: |i| {
            let v = nums(i);
            one(join_numbers(&v[..v.len().saturating_sub(1)]))
        },
    },
    BuiltinTaskSpec {
        name: "numbers_subtract_one",
        format: InputFormat::Numbers,
        instructions: &[
            "Subtract one from every number in the list.",
            "Decrease each number by 1.",
            "Replace each number with the number that comes before it.",
        ],
        held_out: true,
        solve: |i| map_numbers(i, |x| x - 1),
    },
    BuiltinTaskSpec {
        name: "numbers_keep_below_50",
        format: InputFormat::Numbers,
        instructions: &[
            "Keep only the numbers smaller than 50.",
            "Remove every number that is 50 or more.",
            "Output the numbers below fifty; write none if there are none.",
        ],
        held_out: true,
        solve: |i| filter_numbers(i, |x| x < 50),
    },
    BuiltinTaskSpec {
        name: "numbers_range",
        format: InputFormat::Numbers,
        instructions: &[
            "Subtract the smallest number from the largest number.",
            "What is the difference between the maximum and the minimum?",
            "Output the largest number minus the smallest number.",
        ],
        held_out: true,
        solve: |i| {
            let v = nums(i);
            let max = v.iter().max().copied().unwrap_or(0);
            let min = v.iter().min().copied().unwrap_or(0);
            one(max - min)
        },
    },
    BuiltinTaskSpec {
        name: "words_sort_reverse",
        format: InputFormat::Words,
        instructions: &[
            "Sort the words in reverse alphabetical order.",
            "Arrange the words from z to a.",
            "Put the words in descending dictionary order.",
        ],
        held_out: true,
        solve: |i| {
            let mut v = words(i).to_vec();
            v.sort_by(|a, b| b.cmp(a));
            one(v.join(" "))
        },
    },
    BuiltinTaskSpec {
        name: "words_shortest",
        format: InputFormat::Words,
        instructions: &[
            "Find the shortest word.",
            "Which word has the fewest letters?",
            "Output the word with the smallest length.",
        ],
        held_out: true,
        solve: |i| words_by_length(i, false),
    },
    BuiltinTaskSpec {
        name: "words_final_letters",
        format: InputFormat::Words,
        instructions: &[
            "Output the last letter of each word.",
            "Write the final letter of every word, separated by spaces.",
            "For each word, keep only its last letter.",
        ],
        held_out: true,
        solve: |i| {
            let v: Vec<String> = words(i)
                .iter()
                .filter_map(|w| w.chars().last())
                .map(String::from)
                .collect();
            one(v.join(" "))
        },
    },
    BuiltinTaskSpec {
        name: "word_reverse_uppercase",
        format: InputFormat::Word,
        instructions: &[
            "Spell the word backwards in capital letters.",
            "Reverse the letters of the word and write them in uppercase.",
            "Write the word from its last letter to its first, all capitalized.",
        ],
        held_out: true,
        solve: |i| one(word(i).chars().rev().collect::<String>().to_uppercase()),
    },
    BuiltinTaskSpec {
        name: "pair_min",
        format: InputFormat::Pair,
        instructions: &[
            "Output the smaller of the two numbers.",
            "Which of the two numbers is lower?",
            "Give the minimum of the pair.",
        ],
        held_out: true,
        solve: |i| {
            let (a, b) = pair(i);
            one(a.min(b))
        },
    },
    BuiltinTaskSpec {
        name: "number_is_odd",
        format: InputFormat::Number,
        instructions: &[
            "Is the number odd? Answer yes or no.",
            "Answer yes if the number is not divisible by two, otherwise no.",
            "Say yes for an odd number and no for an even one.",
        ],
        held_out: true,
        solve: |i| one(if number(i) % 2 != 0 { "yes" } else { "no" }),
    },
];
