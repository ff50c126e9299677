//! The errors hint-config reports: syntax errors with a caret under the offending
//! token, include problems, and the semantic errors of binding and typed access.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Where a statement or an error sits in a gin source: file (or a pseudo-name such as
/// `<bindings>`), 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file name as given, or a pseudo-name for strings.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A gin syntax error, displayed as `file:line:col: message`, the offending line and a
/// caret under the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub location: Location,
    /// What it expected (gin's wording where gin has one).
    pub message: String,
    /// The text of the offending line, without its newline.
    pub line_text: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caret_pad = " ".repeat(self.location.col.saturating_sub(1));
        write!(
            f,
            "{}: {}\n    {}\n    {}^",
            self.location, self.message, self.line_text, caret_pad
        )
    }
}

impl std::error::Error for SyntaxError {}

/// Everything that can go wrong while reading, binding or using a gin configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The text is not valid gin.
    #[error("{0}")]
    Syntax(#[from] SyntaxError),
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An `include` (or `--gin_file`) names a file found under none of the prefixes.
    #[error("{}cannot find `{name}`; tried: {}", at_prefix(at), tried_list(tried))]
    IncludeNotFound {
        /// The path as written.
        name: String,
        /// Every candidate path tried, in order.
        tried: Vec<PathBuf>,
        /// The `include` statement, when there is one.
        at: Option<Location>,
    },
    /// Files include each other in a loop.
    #[error("include cycle: {}", chain.join(" -> "))]
    IncludeCycle {
        /// The files on the include stack, ending with the one included again.
        chain: Vec<String>,
    },
    /// A selector matches no registered configurable.
    #[error(
        "{}unknown configurable `{selector}`{}",
        at_prefix(at),
        did_you_mean(suggestion)
    )]
    UnknownConfigurable {
        /// The selector as written.
        selector: String,
        /// The closest registered selector, if any is close.
        suggestion: Option<String>,
        /// Where it was written, when it comes from a file.
        at: Option<Location>,
    },
    /// A selector is a suffix of more than one registered configurable.
    #[error("{}ambiguous selector `{selector}` matches {}", at_prefix(at), candidates.join(", "))]
    AmbiguousSelector {
        /// The selector as written.
        selector: String,
        /// All complete selectors it matches.
        candidates: Vec<String>,
        /// Where it was written, when it comes from a file.
        at: Option<Location>,
    },
    /// A binding names a parameter its configurable does not have.
    #[error(
        "{}`{selector}` has no parameter `{param}`{}",
        at_prefix(at),
        did_you_mean(suggestion)
    )]
    UnknownParameter {
        /// The complete selector of the configurable.
        selector: String,
        /// The parameter as written.
        param: String,
        /// The closest parameter name, if any is close.
        suggestion: Option<String>,
        /// Where it was written.
        at: Option<Location>,
    },
    /// With dynamic registration, a selector's first component must be bound by an import.
    #[error(
        "{}`{name}` in `{selector}` is not bound by an import of this file (dynamic registration)",
        at_prefix(at)
    )]
    UnboundImportName {
        /// The first component.
        name: String,
        /// The whole selector.
        selector: String,
        /// Where it was written.
        at: Option<Location>,
    },
    /// `from __gin__ import dynamic_registration` came after another import.
    #[error("{at}: `from __gin__ import dynamic_registration` must come before any other import")]
    LateDynamicRegistration {
        /// The offending statement.
        at: Location,
    },
    /// Bindings still set to `%gin.REQUIRED` once all files and overrides were applied.
    #[error("{}", required_list(names))]
    RequiredUnbound {
        /// `selector.param` or macro names, with the location that set them.
        names: Vec<(String, Location)>,
    },
    /// A configurable was used without a value for a parameter that needs one.
    #[error("`{selector}` in scope `{scope}` needs `{param}`, which is `%gin.REQUIRED`")]
    MissingRequired {
        /// The complete selector.
        selector: String,
        /// The active scope.
        scope: String,
        /// The parameter.
        param: String,
    },
    /// `%NAME` with no `NAME = …` anywhere.
    #[error(
        "macro `%{name}` is used but never defined{}",
        did_you_mean(suggestion)
    )]
    UndefinedMacro {
        /// The macro name, with its scopes.
        name: String,
        /// The closest defined macro, if any is close.
        suggestion: Option<String>,
    },
    /// Macros or references that refer back to themselves.
    #[error("evaluation cycle: {}", chain.join(" -> "))]
    EvaluationCycle {
        /// The macros or configurables being evaluated, in order.
        chain: Vec<String>,
    },
    /// `@name()` refers to a configurable registered without a constructor.
    #[error("`@{selector}()` cannot be called: no constructor is registered for it")]
    NotCallable {
        /// The complete selector.
        selector: String,
    },
    /// Bound values that do not fit the Rust type of the configurable.
    #[error("cannot fill `{selector}` (scope `{scope}`): {message}")]
    Deserialize {
        /// The complete selector.
        selector: String,
        /// The active scope.
        scope: String,
        /// serde's explanation.
        message: String,
    },
    /// A registration that cannot work (e.g. a type that does not serialize to a struct).
    #[error("cannot register `{selector}`: {message}")]
    Registration {
        /// The selector being registered.
        selector: String,
        /// Why.
        message: String,
    },
    /// A `--gin.` flag could not be rewritten into a binding.
    #[error(transparent)]
    Flag(#[from] crate::cli::GinFlagError),
}

fn at_prefix(at: &Option<Location>) -> String {
    at.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn tried_list(tried: &[PathBuf]) -> String {
    tried
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn required_list(names: &[(String, Location)]) -> String {
    names
        .iter()
        .map(|(name, at)| {
            format!("{at}: `{name}` set to `%gin.REQUIRED` but not subsequently overridden.")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
