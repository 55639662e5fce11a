//! What one declaration of a setting holds, and what is derived from it:
//! its clap argument (flag, variable, value name, help with the default),
//! its config-file key and reader, its merge (flag > variable > file >
//! default), its `--check-config` field and what a SIGHUP does with it.
//!
//! A setting is a plain struct literal ([`Setting`]) of functions and names
//! rather than the output of a macro: every part of it reads as ordinary
//! Rust, the compiler checks its types (a `Setting<u16>` parses to, is read
//! from the file as, and applies a `u16`), and the generic code below is
//! the only place that knows how clap, the TOML file and the reload see a
//! setting. The table itself is [`super::SETTINGS`].

use std::any::Any;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::{Args, Settings, Source};
use crate::config_file::FileValues;

/// One daemon setting. Its `key` names it everywhere: the config-file key,
/// the flag (`--` and the key with dashes), the variable (`ROSSIP_` and the
/// key in capitals), its `--check-config` field and its reload log line.
pub struct Setting<T> {
    /// The config-file key (lower case, underscores).
    pub key: &'static str,
    /// What `--help` calls the flag's value; `None`: the key in capitals.
    pub value_name: Option<&'static str>,
    /// The `--help` text; the variable read by hand and the default are
    /// appended (see [`Env`] and [`HelpDefault`]).
    pub help: &'static str,
    /// What `--help` says about the default.
    pub default: HelpDefault,
    /// How the variable is read.
    pub env: Env,
    /// How the flag takes its value, and the parser of the flag's and the
    /// variable's text.
    pub flag: Flag<T>,
    /// Reads the config file's value: with the flag's parser where the
    /// file writes the value as the flag does, so both are checked alike.
    pub file: fn(ValueDeserializer<'_>) -> Result<T, toml::de::Error>,
    /// Puts a given value into the settings (over the default).
    pub apply: fn(&mut Settings, T),
    /// The effective value as `--check-config` prints it; also what a
    /// reload compares and names, and the default `--help` states.
    pub show: fn(&Settings) -> String,
    /// What SIGHUP does with a changed value.
    pub on_reload: OnReload,
}

/// What `--help` says about a setting's default.
#[derive(Debug, Clone, Copy)]
pub enum HelpDefault {
    /// `[default: V]`, V being what [`Setting::show`] makes of the
    /// defaults: the help cannot drift from the code.
    Shown,
    /// `[default: TEXT]`: a default that depends on the host or the user,
    /// described.
    Described(&'static str),
    /// Nothing (off, none, or said by the help text).
    Unstated,
}

/// How a setting's `ROSSIP_*` variable is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// By clap (`[env: ROSSIP_PORT=…]` in `--help`); a bad value is a
    /// usage error naming the variable.
    Clap,
    /// By hand, so that an empty variable counts as unset, as it does for
    /// rossipctl (clap refuses an empty path); `--help` says `[env: NAME]`.
    EmptyIsUnset,
}

/// How the flag takes its value; each variant converts what clap parsed to
/// the setting's type, so that the types line up at compile time.
pub enum Flag<T> {
    /// `--key VALUE`, parsed by the function.
    Value(fn(&str) -> Result<T, String>),
    /// `--key PATH`: any path but an empty one, UTF-8 or not.
    Path(fn(PathBuf) -> T),
    /// `--key` alone (the variable says `true` or `false`); given `false`
    /// by the flag's variable, it still beats the file.
    Switch(fn(bool) -> T),
    /// `--key VALUE`, repeatable; the variable is a comma-separated list.
    /// A list from a flag or variable replaces the file's.
    List(fn(Vec<String>) -> T),
}

/// What SIGHUP does with a setting whose value changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReload {
    /// Kept until a restart; the reload logs `not applied: KEY OLD -> NEW
    /// (needs a restart)`.
    Restart,
    /// Applied by the running daemon (`reload.rs` says how for each).
    Apply(Live),
}

/// The settings a running daemon can change, one variant per way of
/// changing one (matched exhaustively by the reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// The log filter, swapped in place.
    LogLevel,
    /// The cluster key file: new keys installed (read on every reload,
    /// changed or not: its content may have changed).
    KeyFile,
}

impl<T> Setting<T> {
    /// `--key-name`.
    pub fn flag_name(&self) -> String {
        self.key.replace('_', "-")
    }

    /// `ROSSIP_KEY_NAME`.
    pub fn env_name(&self) -> String {
        format!("ROSSIP_{}", self.key.to_ascii_uppercase())
    }
}

impl<T: Clone + Send + Sync + 'static> Setting<T> {
    /// The value from the command line: the flag, else the variable (with
    /// which of them).
    pub fn on_command_line(&self, args: &Args) -> Result<Option<(T, Source)>, String> {
        let source = match args.matches.value_source(self.key) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            // Absent, or a switch's implicit `false`: not given.
            _ => return self.in_variable_read_by_hand(),
        };
        let wrong_type = |e: clap::parser::MatchesError| format!("--{}: {e}", self.flag_name());
        let value = match self.flag {
            Flag::Value(_) => args.matches.try_get_one::<T>(self.key).map(|v| v.cloned()),
            Flag::Path(convert) => args
                .matches
                .try_get_one::<PathBuf>(self.key)
                .map(|p| p.cloned().map(convert)),
            Flag::Switch(convert) => args
                .matches
                .try_get_one::<bool>(self.key)
                .map(|on| on.copied().map(convert)),
            Flag::List(convert) => args
                .matches
                .try_get_many::<String>(self.key)
                .map(|items| items.map(|items| convert(items.cloned().collect()))),
        }
        .map_err(wrong_type)?;
        Ok(value.map(|value| (value, source)))
    }

    /// The value of a variable read by hand ([`Env::EmptyIsUnset`]).
    fn in_variable_read_by_hand(&self) -> Result<Option<(T, Source)>, String> {
        if self.env != Env::EmptyIsUnset {
            return Ok(None);
        }
        let variable = self.env_name();
        let Some(text) = std::env::var_os(&variable).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        self.flag
            .parse_os(text)
            .map(|value| Some((value, Source::Env)))
            .map_err(|e| format!("environment variable {variable}: {e}"))
    }

    /// The value from the config file, if it has the key.
    pub fn in_file(&self, file: &FileValues) -> Option<T> {
        file.get::<T>(self.key).cloned()
    }

    /// The value that beats the default, if any: the command line's, else
    /// the file's.
    pub fn given(&self, args: &Args, file: &FileValues) -> Result<Option<(T, Source)>, String> {
        Ok(self
            .on_command_line(args)?
            .or_else(|| self.in_file(file).map(|value| (value, Source::File))))
    }
}

impl<T> Flag<T> {
    /// The value of a variable read by hand, as clap would have parsed it.
    fn parse_os(&self, text: OsString) -> Result<T, String> {
        let utf8 = |text: OsString| {
            text.into_string()
                .map_err(|text| format!("invalid UTF-8 in {text:?}"))
        };
        match self {
            Flag::Path(convert) => Ok(convert(PathBuf::from(text))),
            Flag::Value(parse) => parse(&utf8(text)?),
            Flag::Switch(convert) => match utf8(text)?.as_str() {
                "true" => Ok(convert(true)),
                "false" => Ok(convert(false)),
                other => Err(format!(
                    "invalid value {other:?} (possible values: true, false)"
                )),
            },
            Flag::List(convert) => Ok(convert(utf8(text)?.split(',').map(str::to_owned).collect())),
        }
    }
}

/// A setting whatever its type: what the table's users (the command line,
/// the file, the merge, `--check-config`, the reload, the man page) need.
pub trait AnySetting: Sync {
    /// The config-file key.
    fn key(&self) -> &'static str;
    /// The flag, without its dashes (for the tests of the table).
    #[cfg(test)]
    fn flag(&self) -> String;
    /// Whether its value is a path ([`Flag::Path`]), which
    /// [`Settings::pin_paths`] must make absolute (a test checks).
    #[cfg(test)]
    fn takes_path(&self) -> bool;
    /// The clap argument; `defaults` gives the `[default: …]` of the help.
    fn arg(&self, defaults: &Settings) -> Arg;
    /// Reads the file's value, checked as the flag's would be.
    fn read_file(
        &self,
        value: Spanned<DeValue<'_>>,
    ) -> Result<Box<dyn Any + Send + Sync>, toml::de::Error>;
    /// Applies the command line's or else the file's value, if any.
    fn merge(&self, args: &Args, file: &FileValues, into: &mut Settings) -> Result<(), String>;
    /// The effective value, as `--check-config` prints it.
    fn show(&self, settings: &Settings) -> String;
    /// What SIGHUP does with a changed value.
    fn on_reload(&self) -> OnReload;
    /// The variable and the flag it stands for, when read by hand (clap's
    /// own are listed by the argument).
    fn variable_read_by_hand(&self) -> Option<(String, String)>;
}

impl<T: Clone + Send + Sync + 'static> AnySetting for Setting<T> {
    fn key(&self) -> &'static str {
        self.key
    }

    #[cfg(test)]
    fn flag(&self) -> String {
        self.flag_name()
    }

    #[cfg(test)]
    fn takes_path(&self) -> bool {
        matches!(self.flag, Flag::Path(_))
    }

    fn arg(&self, defaults: &Settings) -> Arg {
        let mut help = self.help.to_owned();
        if self.env == Env::EmptyIsUnset {
            help.push_str(&format!(" [env: {}]", self.env_name()));
        }
        match self.default {
            HelpDefault::Shown => {
                help.push_str(&format!(" [default: {}]", (self.show)(defaults)));
            }
            HelpDefault::Described(text) => help.push_str(&format!(" [default: {text}]")),
            HelpDefault::Unstated => {}
        }
        let mut arg = Arg::new(self.key).long(self.flag_name()).help(help);
        if self.env == Env::Clap {
            arg = arg.env(self.env_name());
        }
        let value_name = self
            .value_name
            .map_or_else(|| self.key.to_ascii_uppercase(), str::to_owned);
        match self.flag {
            Flag::Value(parse) => arg
                .value_name(value_name)
                .action(ArgAction::Set)
                .value_parser(parse),
            Flag::Path(_) => arg
                .value_name(value_name)
                .action(ArgAction::Set)
                .value_parser(clap::value_parser!(PathBuf)),
            Flag::Switch(_) => arg.action(ArgAction::SetTrue),
            Flag::List(_) => arg
                .value_name(value_name)
                .action(ArgAction::Append)
                .value_delimiter(','),
        }
    }

    fn read_file(
        &self,
        value: Spanned<DeValue<'_>>,
    ) -> Result<Box<dyn Any + Send + Sync>, toml::de::Error> {
        let value = (self.file)(ValueDeserializer::from(value))?;
        Ok(Box::new(value))
    }

    fn merge(&self, args: &Args, file: &FileValues, into: &mut Settings) -> Result<(), String> {
        if let Some((value, _)) = self.given(args, file)? {
            (self.apply)(into, value);
        }
        Ok(())
    }

    fn show(&self, settings: &Settings) -> String {
        (self.show)(settings)
    }

    fn on_reload(&self) -> OnReload {
        self.on_reload
    }

    fn variable_read_by_hand(&self) -> Option<(String, String)> {
        (self.env == Env::EmptyIsUnset).then(|| (self.env_name(), self.flag_name()))
    }
}

/// A file value written as the flag's text (`reap_after = "1h"`), checked
/// by the flag's parser.
pub fn file_text<T>(
    value: ValueDeserializer<'_>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, toml::de::Error> {
    use serde::Deserialize as _;
    let text = String::deserialize(value)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// A file value written as a TOML integer (`history = 100000`), checked by
/// the flag's parser.
pub fn file_count(
    value: ValueDeserializer<'_>,
    parse: fn(&str) -> Result<usize, String>,
) -> Result<usize, toml::de::Error> {
    use serde::Deserialize as _;
    let n = u64::deserialize(value)?;
    parse(&n.to_string()).map_err(serde::de::Error::custom)
}
