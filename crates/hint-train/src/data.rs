//! The data of a run now lives in [`hint_data::data_config`]; this shim keeps hint-train's old
//! names and signatures (with [`TrainError`] results) until its callers use hint-data's
//! directly.

use std::path::Path;

use hint_config::Config;

use crate::error::{Result, TrainError};

pub use hint_data::bigbench::BigBenchOptions as BigBenchDataConfig;
pub use hint_data::builtin::BuiltinOptions as BuiltinDataConfig;
pub use hint_data::corpus::CorpusOptions as CorpusDataConfig;
pub use hint_data::p3::P3Options as P3DataConfig;
pub use hint_data::spec::RegistrySpec as RegistryConfig;
pub use hint_data::superni::SuperNiOptions as SuperNiDataConfig;
pub use hint_data::VocabularyOptions as VocabularyConfig;
pub use hint_data::{register, RunData};

/// [`hint_data::DataConfig`] with hint-train's error type: a newtype, because
/// `DataSettings::from_config(config)?` must keep returning a [`TrainError`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataSettings(pub hint_data::DataConfig);

impl std::ops::Deref for DataSettings {
    type Target = hint_data::DataConfig;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DataSettings {
    /// Reads the data configurables.
    pub fn from_config(config: &Config) -> Result<Self> {
        hint_data::DataConfig::from_config(config)
            .map(Self)
            .map_err(|e| TrainError::Data(e.to_string()))
    }
}

/// Builds the task registry of a run ([`hint_data::DataConfig::build`]).
pub fn build_data(
    data: &DataSettings,
    lengths: (usize, usize, usize),
    existing_vocabulary: Option<&Path>,
) -> Result<RunData> {
    data.build(lengths, existing_vocabulary)
        .map_err(|e| TrainError::Data(e.to_string()))
}
