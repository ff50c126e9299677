//! The bound configuration: statements applied in order (later bindings win),
//! scopes, lazy macros, `%gin.REQUIRED`, reference evaluation and typed access.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::ast::{Statement, StatementKind};
use crate::error::{ConfigError, Location};
use crate::loader::Loader;
use crate::registry::{Bindings, Registry};
use crate::render;
use crate::suggest::closest;
use crate::value::{json_key, Value};

/// Constructors may call back into [`Config::get`]; deeper nesting than this is taken
/// to be a reference cycle (`a.x = @b()`, `b.y = @a()`).
const MAX_CALL_DEPTH: usize = 64;

/// A bound value and the statement that bound it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The value as written (references and macros unevaluated).
    pub value: Value,
    /// Where it was bound.
    pub location: Location,
}

/// One `scope/selector.param = value` entry of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingEntry {
    /// Scopes joined by `/`; empty when unscoped.
    pub scope: String,
    /// The complete selector (or the selector as written when no registry knows it).
    pub selector: String,
    /// The parameter.
    pub param: String,
    /// The value.
    pub value: Value,
}

impl BindingEntry {
    /// `{"scope", "selector", "parameter", "value"}`, the value in the tagged shape of
    /// [`Value::to_tagged_json`] (so tuples, references and macros stay distinct).
    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "scope": self.scope,
            "selector": self.selector,
            "parameter": self.param,
            "value": self.value.to_tagged_json(),
        })
    }
}

pub use crate::ast::Import;

impl Bindings for Config {
    fn parameters(&self, selector: &str, scope: &str) -> Result<Json, ConfigError> {
        self.get(selector, scope)
    }
}

enum Source {
    File(String),
    Text { name: String, text: String },
    Binding(String),
}

/// Assembles a [`Config`] the way t5x does: search paths, then `--gin_file`s in order,
/// then `--gin_bindings` in order, then finalisation (the `%gin.REQUIRED` check).
#[derive(Default)]
pub struct ConfigBuilder {
    registry: Option<Registry>,
    search_paths: Vec<PathBuf>,
    sources: Vec<Source>,
    skip_unknown: bool,
}

impl ConfigBuilder {
    /// A builder with no sources, no search paths and no registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates selectors, parameters and references against `registry` and
    /// resolves partial selectors to complete ones. Without a registry every selector
    /// is accepted and kept as written (enough to show or re-render a config).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Adds folders where `--gin_file` and `include` paths are looked up.
    pub fn search_paths<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.search_paths.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds a gin file, parsed after the sources added before it.
    pub fn file(mut self, path: impl Into<String>) -> Self {
        self.sources.push(Source::File(path.into()));
        self
    }

    /// Adds gin text named `name` in locations.
    pub fn source(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.sources.push(Source::Text {
            name: name.into(),
            text: text.into(),
        });
        self
    }

    /// Adds a binding (a `--gin_bindings` value), applied after every file.
    pub fn binding(mut self, binding: impl Into<String>) -> Self {
        self.sources.push(Source::Binding(binding.into()));
        self
    }

    /// gin's `skip_unknown`: bindings and references to unknown configurables or
    /// parameters are kept (and shown) but not validated, instead of being errors.
    pub fn skip_unknown(mut self, skip: bool) -> Self {
        self.skip_unknown = skip;
        self
    }

    /// Parses every source, applies the statements in order and finalises.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut statements = Vec::new();
        let mut loader = Loader::new(&self.search_paths);
        let (files, bindings): (Vec<_>, Vec<_>) = self
            .sources
            .into_iter()
            .partition(|s| !matches!(s, Source::Binding(_)));
        for source in files.into_iter().chain(bindings) {
            match source {
                Source::File(path) => loader.load_file(&path, None, &mut statements)?,
                Source::Text { name, text } => loader.load_source(&name, &text, &mut statements)?,
                Source::Binding(text) => {
                    loader.load_source("--gin_bindings", &text, &mut statements)?
                }
            }
        }
        let mut config = Config {
            registry: self.registry,
            skip_unknown: self.skip_unknown,
            bindings: BTreeMap::new(),
            macros: BTreeMap::new(),
            referenced_macros: BTreeSet::new(),
            imports: Vec::new(),
            operative: Mutex::default(),
            depth: AtomicUsize::new(0),
        };
        for statement in statements {
            config.apply(statement)?;
        }
        config.finalize()?;
        Ok(config)
    }
}

#[derive(Default)]
struct Operative {
    sections: BTreeMap<(String, String), BTreeMap<String, Value>>,
    macros: BTreeSet<String>,
}

/// A finalised gin configuration.
pub struct Config {
    registry: Option<Registry>,
    skip_unknown: bool,
    bindings: BTreeMap<(String, String), BTreeMap<String, Bound>>,
    macros: BTreeMap<String, Bound>,
    /// Every macro any statement referred to, also in values a later binding replaced: a
    /// macro a file uses is not "unreferenced" because a flag overrode its one use.
    referenced_macros: BTreeSet<String>,
    imports: Vec<Import>,
    operative: Mutex<Operative>,
    depth: AtomicUsize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bindings", &self.bindings)
            .field("macros", &self.macros)
            .field("imports", &self.imports)
            .finish_non_exhaustive()
    }
}

/// A macro nothing refers to ([`Config::unreferenced_macros`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UnreferencedMacro {
    /// The macro's name.
    pub name: String,
    /// Where it was bound.
    pub location: Location,
    /// The referenced macro closest to it, when one is near enough to be what was meant.
    pub closest: Option<String>,
}

impl std::fmt::Display for UnreferencedMacro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: macro `{}` is bound but nothing refers to it, so it changes nothing",
            self.location, self.name
        )?;
        match &self.closest {
            Some(near) => write!(f, " (did you mean `{near}`?)"),
            None => Ok(()),
        }
    }
}

/// A binding nothing read ([`Config::unread_bindings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadBinding {
    /// Its scope (`""` for none).
    pub scope: String,
    /// The configurable.
    pub selector: String,
    /// The parameter.
    pub param: String,
    /// Where it was bound.
    pub location: Location,
}

impl std::fmt::Display for UnreadBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scope = if self.scope.is_empty() {
            String::new()
        } else {
            format!("{}/", self.scope)
        };
        write!(
            f,
            "{}: `{scope}{}.{}` is bound but nothing read `{}`{}, so it changes nothing",
            self.location,
            self.selector,
            self.param,
            self.selector,
            if self.scope.is_empty() {
                String::new()
            } else {
                format!(" in scope `{}`", self.scope)
            }
        )
    }
}

fn collect_macro_names(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Macro(name) => {
            names.insert(name.clone());
        }
        Value::List(items) | Value::Tuple(items) => {
            items.iter().for_each(|v| collect_macro_names(v, names));
        }
        Value::Dict(items) => items.iter().for_each(|(k, v)| {
            collect_macro_names(k, names);
            collect_macro_names(v, names);
        }),
        _ => {}
    }
}

/// What evaluation is working on, for error messages and cycle detection.
struct EvalCtx<'a> {
    selector: &'a str,
    param: &'a str,
    scope: &'a str,
    macros: Vec<String>,
}

impl Config {
    /// Parses gin text with no registry, no search paths: a shortcut for tests and tools.
    pub fn parse_text(name: &str, text: &str) -> Result<Config, ConfigError> {
        ConfigBuilder::new().source(name, text).build()
    }

    fn apply(&mut self, statement: Statement) -> Result<(), ConfigError> {
        let at = statement.location;
        match statement.kind {
            StatementKind::Binding {
                scope,
                selector,
                param,
                value,
            } => {
                let selector = self.canonical(&selector, Some(&at), Some(&param))?;
                self.check_references(&value, &at)?;
                collect_macro_names(&value, &mut self.referenced_macros);
                self.bindings.entry((scope, selector)).or_default().insert(
                    param,
                    Bound {
                        value,
                        location: at,
                    },
                );
            }
            StatementKind::Macro { scope, name, value } => {
                self.check_references(&value, &at)?;
                collect_macro_names(&value, &mut self.referenced_macros);
                let name = if scope.is_empty() {
                    name
                } else {
                    format!("{scope}/{name}")
                };
                self.macros.insert(
                    name,
                    Bound {
                        value,
                        location: at,
                    },
                );
            }
            StatementKind::Block { selector, .. } => {
                self.canonical(&selector, Some(&at), None)?;
            }
            StatementKind::Import {
                module,
                is_from,
                alias,
            } => {
                let import = Import {
                    module,
                    is_from,
                    alias,
                };
                if !self.imports.contains(&import) {
                    self.imports.push(import);
                }
            }
            // The loader expands includes in place.
            StatementKind::Include { .. } => {}
        }
        Ok(())
    }

    /// The complete selector for a (partial) one; unknown selectors are errors unless
    /// `skip_unknown`, and are kept as written without a registry.
    fn canonical(
        &self,
        selector: &str,
        at: Option<&Location>,
        param: Option<&str>,
    ) -> Result<String, ConfigError> {
        let Some(registry) = &self.registry else {
            return Ok(selector.to_string());
        };
        if selector.starts_with("gin.") {
            return Ok(selector.to_string());
        }
        match registry.lookup(selector, at) {
            Ok(configurable) => {
                if let Some(param) = param {
                    match Registry::check_param(configurable, param, at) {
                        Err(_) if self.skip_unknown => {}
                        other => other?,
                    }
                }
                Ok(configurable.selector.clone())
            }
            Err(ConfigError::UnknownConfigurable { .. }) if self.skip_unknown => {
                Ok(selector.to_string())
            }
            Err(e) => Err(e),
        }
    }

    fn check_references(&self, value: &Value, at: &Location) -> Result<(), ConfigError> {
        match value {
            Value::Ref(r) => self.canonical(&r.selector, Some(at), None).map(drop),
            Value::List(items) | Value::Tuple(items) => {
                items.iter().try_for_each(|v| self.check_references(v, at))
            }
            Value::Dict(items) => items.iter().try_for_each(|(k, v)| {
                self.check_references(k, at)?;
                self.check_references(v, at)
            }),
            _ => Ok(()),
        }
    }

    fn finalize(&self) -> Result<(), ConfigError> {
        let mut names: Vec<(String, Location)> = Vec::new();
        for ((scope, selector), params) in &self.bindings {
            for (param, bound) in params {
                if bound.value.is_required() {
                    let prefix = if scope.is_empty() {
                        String::new()
                    } else {
                        format!("{scope}/")
                    };
                    names.push((
                        format!("{prefix}{selector}.{param}"),
                        bound.location.clone(),
                    ));
                }
            }
        }
        for (name, bound) in &self.macros {
            if bound.value.is_required() {
                names.push((name.clone(), bound.location.clone()));
            }
        }
        if names.is_empty() {
            Ok(())
        } else {
            names.sort_by(|a, b| a.1.cmp(&b.1));
            Err(ConfigError::RequiredUnbound { names })
        }
    }

    /// Every binding, ordered by (scope, selector, parameter).
    pub fn bindings(&self) -> Vec<BindingEntry> {
        self.bindings
            .iter()
            .flat_map(|((scope, selector), params)| {
                params.iter().map(move |(param, bound)| BindingEntry {
                    scope: scope.clone(),
                    selector: selector.clone(),
                    param: param.clone(),
                    value: bound.value.clone(),
                })
            })
            .collect()
    }

    /// The bound value and location of one binding, exactly as bound (no scope
    /// inheritance); `selector` may be partial when a registry is present.
    pub fn binding(&self, scope: &str, selector: &str, param: &str) -> Option<&Bound> {
        let selector = self.canonical(selector, None, None).ok()?;
        self.bindings
            .get(&(scope.to_string(), selector))?
            .get(param)
    }

    /// Every macro (name with scopes → value), last definition winning.
    pub fn macros(&self) -> BTreeMap<String, &Bound> {
        self.macros.iter().map(|(k, v)| (k.clone(), v)).collect()
    }

    /// The imports recorded from all files, in first-seen order.
    pub fn imports(&self) -> &[Import] {
        &self.imports
    }

    /// Every binding with its macros substituted (recursively; references stay).
    pub fn resolved_bindings(&self) -> Result<Vec<BindingEntry>, ConfigError> {
        self.bindings()
            .into_iter()
            .map(|mut entry| {
                let mut chain = Vec::new();
                entry.value = self.substitute_macros(&entry.value, &mut chain)?;
                Ok(entry)
            })
            .collect()
    }

    fn macro_value(&self, name: &str, chain: &[String]) -> Result<&Bound, ConfigError> {
        if chain.iter().any(|n| n == name) {
            let mut cycle: Vec<String> = chain.iter().map(|n| format!("%{n}")).collect();
            cycle.push(format!("%{name}"));
            return Err(ConfigError::EvaluationCycle { chain: cycle });
        }
        self.macros
            .get(name)
            .ok_or_else(|| ConfigError::UndefinedMacro {
                name: name.to_string(),
                suggestion: closest(name, self.macros.keys().map(String::as_str)),
            })
    }

    fn substitute_macros(
        &self,
        value: &Value,
        chain: &mut Vec<String>,
    ) -> Result<Value, ConfigError> {
        Ok(match value {
            Value::Macro(name) if !value.is_required() => {
                let bound = self.macro_value(name, chain)?;
                chain.push(name.clone());
                let v = self.substitute_macros(&bound.value, chain)?;
                chain.pop();
                v
            }
            Value::List(items) => Value::List(
                items
                    .iter()
                    .map(|v| self.substitute_macros(v, chain))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Tuple(items) => Value::Tuple(
                items
                    .iter()
                    .map(|v| self.substitute_macros(v, chain))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Dict(items) => Value::Dict(
                items
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            self.substitute_macros(k, chain)?,
                            self.substitute_macros(v, chain)?,
                        ))
                    })
                    .collect::<Result<_, ConfigError>>()?,
            ),
            other => other.clone(),
        })
    }

    /// The parameters `selector` receives in `scope` (`a/b` for nested scopes): the
    /// bindings of scopes `""`, `a`, `a/b` merged in that order, so the innermost
    /// scope wins and unscoped bindings are inherited.
    pub fn params_in_scope(
        &self,
        selector: &str,
        scope: &str,
    ) -> Result<BTreeMap<String, Value>, ConfigError> {
        let complete = self.canonical(selector, None, None)?;
        Ok(self.merged(&complete, scope))
    }

    fn merged(&self, complete: &str, scope: &str) -> BTreeMap<String, Value> {
        let mut prefixes = vec![String::new()];
        let mut acc = String::new();
        for part in scope.split('/').filter(|p| !p.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            prefixes.push(acc.clone());
        }
        let mut out = BTreeMap::new();
        for prefix in prefixes {
            if let Some(params) = self.bindings.get(&(prefix, complete.to_string())) {
                for (param, bound) in params {
                    out.insert(param.clone(), bound.value.clone());
                }
            }
        }
        out
    }

    /// Fills `T` from the bindings of configurable `selector` in `scope` (`""` for
    /// none, `a/b` for nested scopes): macros and references are evaluated, the
    /// result is deserialized with serde, and fields without a binding take the
    /// struct's defaults (`#[serde(default)]`). The call is recorded for
    /// [`Config::operative_config_str`].
    pub fn get<T: DeserializeOwned>(&self, selector: &str, scope: &str) -> Result<T, ConfigError> {
        let complete = self.canonical(selector, None, None)?;
        let depth = self.depth.fetch_add(1, Ordering::SeqCst);
        let result = if depth >= MAX_CALL_DEPTH {
            Err(ConfigError::EvaluationCycle {
                chain: vec![format!("{scope}/{complete}"), "…".into()],
            })
        } else {
            self.get_inner(&complete, scope)
        };
        self.depth.fetch_sub(1, Ordering::SeqCst);
        serde_json::from_value(Json::Object(result?)).map_err(|e| ConfigError::Deserialize {
            selector: complete.clone(),
            scope: scope.to_string(),
            message: e.to_string(),
        })
    }

    fn get_inner(&self, complete: &str, scope: &str) -> Result<Map<String, Json>, ConfigError> {
        let params = self.merged(complete, scope);
        let mut object = Map::new();
        let mut used_macros = BTreeSet::new();
        for (param, value) in &params {
            let mut ctx = EvalCtx {
                selector: complete,
                param,
                scope,
                macros: Vec::new(),
            };
            object.insert(
                param.clone(),
                self.evaluate(value, &mut ctx, &mut used_macros)?,
            );
        }
        let mut recorded = params;
        if let Some(configurable) = self
            .registry
            .as_ref()
            .and_then(|r| r.lookup(complete, None).ok())
        {
            for (param, default) in &configurable.defaults {
                recorded
                    .entry(param.clone())
                    .or_insert_with(|| Value::from_json(default));
            }
        }
        if let Ok(mut operative) = self.operative.lock() {
            operative
                .sections
                .insert((scope.to_string(), complete.to_string()), recorded);
            operative.macros.extend(used_macros);
        }
        Ok(object)
    }

    fn evaluate(
        &self,
        value: &Value,
        ctx: &mut EvalCtx<'_>,
        used_macros: &mut BTreeSet<String>,
    ) -> Result<Json, ConfigError> {
        Ok(match value {
            Value::None => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::String(s.clone()),
            Value::List(items) | Value::Tuple(items) => Json::Array(
                items
                    .iter()
                    .map(|v| self.evaluate(v, ctx, used_macros))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Dict(items) => Json::Object(
                items
                    .iter()
                    .map(|(k, v)| Ok((json_key(k), self.evaluate(v, ctx, used_macros)?)))
                    .collect::<Result<_, ConfigError>>()?,
            ),
            Value::Macro(_) if value.is_required() => {
                return Err(ConfigError::MissingRequired {
                    selector: ctx.selector.to_string(),
                    scope: ctx.scope.to_string(),
                    param: ctx.param.to_string(),
                })
            }
            Value::Macro(name) => {
                let bound = self.macro_value(name, &ctx.macros)?;
                used_macros.insert(name.clone());
                ctx.macros.push(name.clone());
                let json = self.evaluate(&bound.value, ctx, used_macros)?;
                ctx.macros.pop();
                json
            }
            Value::Ref(r) => {
                let complete = self.canonical(&r.selector, None, None)?;
                if !r.call {
                    return Ok(Json::String(if r.scope.is_empty() {
                        complete
                    } else {
                        format!("{}/{complete}", r.scope)
                    }));
                }
                let constructor = self
                    .registry
                    .as_ref()
                    .and_then(|reg| reg.lookup(&complete, None).ok())
                    .and_then(|c| c.constructor.clone())
                    .ok_or_else(|| ConfigError::NotCallable {
                        selector: complete.clone(),
                    })?;
                // A scoped reference replaces the caller's scope; an unscoped one runs in it.
                let scope = if r.scope.is_empty() {
                    ctx.scope
                } else {
                    &r.scope
                };
                let depth = self.depth.fetch_add(1, Ordering::SeqCst);
                let result = if depth >= MAX_CALL_DEPTH {
                    Err(ConfigError::EvaluationCycle {
                        chain: vec![format!("@{}()", complete), "…".into()],
                    })
                } else {
                    constructor(self, scope)
                };
                self.depth.fetch_sub(1, Ordering::SeqCst);
                result?
            }
        })
    }

    /// Macros bound but referenced by no binding and no other macro, not even one a later
    /// binding replaced: most often a typo
    /// (`TRAIN_STEP = 5` where the files use `%TRAIN_STEPS`). Python gin accepts them
    /// silently; a program should warn (see [`UnreferencedMacro`]'s text).
    ///
    /// ```
    /// let config = hint_config::ConfigBuilder::new()
    ///     .source("a.gin", "TRAIN_STEPS = 10\nrun.steps = %TRAIN_STEPS\nrun.batch = %BATCH\nBATCH = 8\n")
    ///     .binding("TRAIN_STEP = 5")
    ///     // Overrides the one use of BATCH, which the file still refers to: not reported.
    ///     .binding("run.batch = 2")
    ///     .build()
    ///     .unwrap();
    /// let unused = config.unreferenced_macros();
    /// assert_eq!(unused.len(), 1, "{unused:?}");
    /// assert_eq!(unused[0].closest.as_deref(), Some("TRAIN_STEPS"));
    /// ```
    pub fn unreferenced_macros(&self) -> Vec<UnreferencedMacro> {
        let referenced = &self.referenced_macros;
        self.macros
            .iter()
            .filter(|(name, _)| !referenced.contains(name.as_str()))
            .map(|(name, bound)| UnreferencedMacro {
                name: name.clone(),
                location: bound.location.clone(),
                closest: crate::suggest::closest(name, referenced.iter().map(String::as_str)),
            })
            .collect()
    }

    /// Bindings of configurables that no [`Config::get`] so far has read in a scope the
    /// binding applies to: after a program has read everything it uses, these change
    /// nothing (e.g. `t5x/hint.optim.Adafactor.decay_rate` where the scopes are `hyper`
    /// and `t5`).
    ///
    /// ```
    /// #[derive(serde::Deserialize, Default)]
    /// #[serde(default)]
    /// struct Opt { lr: f64 }
    /// let config = hint_config::ConfigBuilder::new()
    ///     .source("a.gin", "hyper/Opt.lr = 0.1\nhyperr/Opt.lr = 0.2\n")
    ///     .build()
    ///     .unwrap();
    /// let _: Opt = config.get("Opt", "hyper").unwrap();
    /// let unread = config.unread_bindings();
    /// assert_eq!(unread.len(), 1);
    /// assert_eq!(unread[0].scope, "hyperr");
    /// ```
    pub fn unread_bindings(&self) -> Vec<UnreadBinding> {
        let Ok(operative) = self.operative.lock() else {
            return Vec::new();
        };
        let read = |scope: &str, selector: &str| {
            operative
                .sections
                .keys()
                .any(|(read_scope, read_selector)| {
                    read_selector == selector
                        && (scope.is_empty()
                            || read_scope == scope
                            || read_scope.starts_with(&format!("{scope}/")))
                })
        };
        let mut unread = Vec::new();
        for ((scope, selector), params) in &self.bindings {
            if read(scope, selector) {
                continue;
            }
            for (param, bound) in params {
                unread.push(UnreadBinding {
                    scope: scope.clone(),
                    selector: selector.clone(),
                    param: param.clone(),
                    location: bound.location.clone(),
                });
            }
        }
        unread
    }

    /// Everything bound, as gin text (gin's `config_str`): imports, macros, then one
    /// section per (scope, configurable). Parsing it gives the same bindings.
    pub fn config_str(&self) -> String {
        let sections = self
            .bindings
            .iter()
            .map(|(k, params)| {
                let params = params
                    .iter()
                    .map(|(p, b)| (p.clone(), b.value.clone()))
                    .collect();
                (k.clone(), params)
            })
            .collect();
        let macros = self
            .macros
            .iter()
            .map(|(k, b)| (k.clone(), b.value.clone()))
            .collect();
        render::render(&self.imports, &macros, &sections)
    }

    /// What [`Config::get`] actually used, as gin text (gin's `operative_config_str`):
    /// for every configurable filled so far, in the scope it was filled in, its bound
    /// parameters and (with a registry) the defaults of the rest, plus the macros used.
    pub fn operative_config_str(&self) -> String {
        let Ok(operative) = self.operative.lock() else {
            return String::new();
        };
        let macros = operative
            .macros
            .iter()
            .filter_map(|m| self.macros.get(m).map(|b| (m.clone(), b.value.clone())))
            .collect();
        render::render(&self.imports, &macros, &operative.sections)
    }
}
