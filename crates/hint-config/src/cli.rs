//! t5x's `--gin.KEY=VALUE` flags, rewritten into gin binding statements.

use thiserror::Error;

/// A `--gin.` flag that cannot be turned into a binding.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GinFlagError {
    /// t5x splits the flag at its first `=`; without one there is no value.
    #[error("`{flag}` has no `=`: write `--gin.KEY=VALUE` (string values need quotes, e.g. --gin.MODEL_DIR=\\\"/runs/a\\\")")]
    MissingEquals {
        /// The flag as given.
        flag: String,
    },
    /// The value is no gin value, and it reads as text whose quotes the shell removed
    /// (`--gin.MODEL_DIR=/runs/a` in bash gives gin `/runs/a`, not `"/runs/a"`).
    #[error("`{flag}`: `{value}` is not a gin value; a string needs quotes, which the shell removes unless they are quoted too: write --gin.{key}=\\\"{value}\\\" or '--gin.{key}=\"{value}\"'")]
    UnquotedString {
        /// The flag as given.
        flag: String,
        /// The key.
        key: String,
        /// The value as the program received it.
        value: String,
    },
    /// `--gin.=value` names nothing.
    #[error("`{flag}` has an empty key before `=`")]
    EmptyKey {
        /// The flag as given.
        flag: String,
    },
}

/// Rewrites `--gin.KEY=VALUE` into the binding `KEY = VALUE`, as t5x does before flag
/// parsing. Returns `None` for arguments that are not `--gin.` flags.
///
/// ```
/// use hint_config::rewrite_gin_flag;
/// assert_eq!(
///     rewrite_gin_flag("--gin.Adafactor.decay_rate=0.8"),
///     Some(Ok("Adafactor.decay_rate = 0.8".to_string()))
/// );
/// assert_eq!(rewrite_gin_flag("--gin_file=a.gin"), None);
/// ```
pub fn rewrite_gin_flag(arg: &str) -> Option<Result<String, GinFlagError>> {
    let rest = arg.strip_prefix("--gin.")?;
    let Some((key, value)) = rest.split_once('=') else {
        return Some(Err(GinFlagError::MissingEquals {
            flag: arg.to_string(),
        }));
    };
    let key = key.trim();
    if key.is_empty() {
        return Some(Err(GinFlagError::EmptyKey {
            flag: arg.to_string(),
        }));
    }
    let value = value.trim();
    let quoted = value.starts_with('"') || value.starts_with('\'');
    if !quoted && crate::parser::parse_value(value).is_err() {
        return Some(Err(GinFlagError::UnquotedString {
            flag: arg.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        }));
    }
    Some(Ok(format!("{key} = {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_equals_only() {
        assert_eq!(
            rewrite_gin_flag("--gin.MODEL_DIR=\"/runs/a=b\""),
            Some(Ok("MODEL_DIR = \"/runs/a=b\"".to_string()))
        );
    }

    #[test]
    fn a_path_whose_quotes_the_shell_ate_gets_the_quoting_hint() {
        let err = rewrite_gin_flag("--gin.MODEL_DIR=/tmp/run")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, GinFlagError::UnquotedString { .. }));
        let text = err.to_string();
        assert!(text.contains("needs quotes"), "{text}");
        assert!(text.contains(r#"--gin.MODEL_DIR=\"/tmp/run\""#), "{text}");
        // Values gin can parse pass unchanged, quoted or not.
        for ok in [
            "--gin.STEPS=10",
            "--gin.A=@f()",
            "--gin.B=[1, %X]",
            "--gin.C='x y'",
        ] {
            assert!(rewrite_gin_flag(ok).unwrap().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_flags_without_a_value() {
        assert_eq!(
            rewrite_gin_flag("--gin.TRAIN_STEPS"),
            Some(Err(GinFlagError::MissingEquals {
                flag: "--gin.TRAIN_STEPS".into()
            }))
        );
        assert!(matches!(
            rewrite_gin_flag("--gin.=3"),
            Some(Err(GinFlagError::EmptyKey { .. }))
        ));
    }
}
