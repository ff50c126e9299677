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
    Some(Ok(format!("{key} = {}", value.trim())))
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
