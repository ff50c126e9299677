//! The input formats of the built-in suite: how inputs are drawn, written and read back.

use crate::rng::SplitMix64;

/// The shape of a task's input; tasks with the same format get interchangeable inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// 3–8 numbers in 0..=99, written `"12 7 88"`.
    Numbers,
    /// 3–6 words from [`WORDS`], written `"cat tree sun"`.
    Words,
    /// One word from [`WORDS`].
    Word,
    /// Two numbers in 0..=20, written `"7 13"`.
    Pair,
    /// One number in 0..=20.
    Number,
}

/// One input value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A list of numbers.
    Numbers(Vec<i64>),
    /// A list of words.
    Words(Vec<String>),
    /// A single word.
    Word(String),
    /// Two numbers.
    Pair(i64, i64),
    /// One number.
    Number(i64),
}

/// The words inputs are drawn from: short, lowercase, of varied lengths (so that longest and
/// shortest are meaningful) and with both vowels and consonants.
pub const WORDS: &[&str] = &[
    "cat", "dog", "sun", "tree", "bird", "fish", "lamp", "rain", "book", "star", "moon", "milk",
    "door", "cake", "frog", "leaf", "ship", "road", "sand", "wind", "apple", "river", "stone",
    "cloud", "grape", "honey", "lemon", "melon", "tiger", "zebra", "garden", "window", "pencil",
    "rabbit", "orange", "bottle", "basket", "island", "ox", "egg", "ant", "owl",
];

impl InputFormat {
    /// Draws an input.
    pub fn sample(&self, rng: &mut SplitMix64) -> Input {
        let word =
            |rng: &mut SplitMix64| WORDS[rng.range(0, WORDS.len() as u64) as usize].to_string();
        match self {
            Self::Numbers => {
                let n = rng.range(3, 9);
                Input::Numbers((0..n).map(|_| rng.range(0, 100) as i64).collect())
            }
            Self::Words => {
                let n = rng.range(3, 7);
                Input::Words((0..n).map(|_| word(rng)).collect())
            }
            Self::Word => Input::Word(word(rng)),
            Self::Pair => Input::Pair(rng.range(0, 21) as i64, rng.range(0, 21) as i64),
            Self::Number => Input::Number(rng.range(0, 21) as i64),
        }
    }

    /// Reads an input written by [`Input::render`]; `None` when `text` does not have this
    /// format.
    pub fn parse(&self, text: &str) -> Option<Input> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let numbers = || {
            parts
                .iter()
                .map(|p| p.parse::<i64>().ok())
                .collect::<Option<Vec<_>>>()
        };
        match self {
            Self::Numbers => numbers().filter(|v| !v.is_empty()).map(Input::Numbers),
            Self::Words => (!parts.is_empty())
                .then(|| Input::Words(parts.iter().map(|w| w.to_string()).collect())),
            Self::Word => (parts.len() == 1).then(|| Input::Word(parts[0].to_string())),
            Self::Pair => match numbers()?.as_slice() {
                [a, b] => Some(Input::Pair(*a, *b)),
                _ => None,
            },
            Self::Number => match numbers()?.as_slice() {
                [n] => Some(Input::Number(*n)),
                _ => None,
            },
        }
    }
}

impl Input {
    /// The text the model reads.
    pub fn render(&self) -> String {
        let join = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
        match self {
            Self::Numbers(v) => join(v),
            Self::Words(v) => v.join(" "),
            Self::Word(w) => w.clone(),
            Self::Pair(a, b) => format!("{a} {b}"),
            Self::Number(n) => n.to_string(),
        }
    }
}
