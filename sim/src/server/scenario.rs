//! Scenario files: a timed script of control actions, run in virtual time (as fast as the
//! machine allows, no sockets) into a ground-truth log. Same seed and same file give the
//! same log, byte for byte: the world is pure and seeded, and nothing here reads a clock.
//!
//! ```toml
//! seed = 7              # optional; --seed overrides it; 1 when neither is given
//! duration_ms = 20000   # sim time to run
//!
//! [[at]]
//! time_ms = 100         # applied at the first step at or after this time
//! action = "plug"       # then the action's fields, as in the control API
//! gun = 0
//! battery_v = 400.0
//! soc = 20.0
//! max_current_a = 200.0
//! target_soc = 80.0
//!
//! [[at]]
//! time_ms = 5000
//! action = "inject_fault"
//! kind = "contactor_weld"
//! target = 0
//! contactor = "gc"
//! ```
//!
//! Actions: `plug` (EV fields), `unplug` (`gun`), `rfid` (`gun`, `id_tag`),
//! `inject_fault` (`kind`, `target`, `contactor`), `clear_fault` (`id`), `send`
//! (`cabinet`, `frame` in candump syntax, `"110#0100F401"`). Entries run in time order,
//! and in file order at equal times.
//!
//! A refused file names the file, line and field (`s.toml:12: at[2].gun: invalid type:
//! string "x", expected u16`), like a refused hub config.
//!
//! The log has one JSON object per line: `{"time_ms", "state"}` every
//! [`STATE_INTERVAL_MS`] of sim time (from 0, after that time's actions), and
//! `{"time_ms", "violation"}` as each violation happens.

use std::fmt;
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

use ringhub_proto::config::HubConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::world::{Action, ActionError, EvSpec, FaultSpec, Violation, World};

/// Sim time between two ground-truth states in the log.
pub const STATE_INTERVAL_MS: u64 = 100;

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file, for errors.
    pub origin: String,
    /// The seed the file asks for.
    pub seed: Option<u64>,
    /// How much sim time to run.
    pub duration_ms: u64,
    /// The actions, sorted by time (stable: file order at equal times).
    pub entries: Vec<Entry>,
}

/// One `[[at]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When to apply it.
    pub time_ms: u64,
    /// What to do.
    pub action: Action,
    /// Its index among the `[[at]]` entries, for errors.
    pub index: usize,
    /// Its line in the file, for errors.
    pub line: usize,
}

/// A scenario file that cannot be used, and where it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file.
    pub origin: String,
    /// The 1-based line; `None` when the file could not be read.
    pub line: Option<usize>,
    /// The path of the faulty field (`at[2].gun`); empty for a syntax error.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a scenario run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The world refused an action of the file (an unknown gun, say).
    #[error("{origin}:{line}: at[{index}].{}", .error)]
    Refused {
        /// The file.
        origin: String,
        /// The entry's line.
        line: usize,
        /// The entry's index.
        index: usize,
        /// What the world said.
        error: ActionError,
    },
    /// The log could not be written.
    #[error("cannot write the truth log: {0}")]
    Io(#[from] io::Error),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Sim time at the end.
    pub end_ms: u64,
    /// Violations seen.
    pub violations: usize,
    /// With `strict`, the violation that stopped the run.
    pub stopped_by: Option<Violation>,
}

impl Scenario {
    /// Reads and parses a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            line: None,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses a scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let src = Source { origin, text };
        let root = DeTable::parse(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            src.error(
                &span,
                "",
                format!("invalid TOML: {}", e.message().trim_end()),
            )
        })?;
        let mut seed = None;
        let mut duration_ms = None;
        let mut entries = Vec::new();
        for (key, value) in root.get_ref().iter() {
            match key.get_ref().as_ref() {
                "seed" => seed = Some(src.value::<u64>(value, "seed")?),
                "duration_ms" => duration_ms = Some(src.value::<u64>(value, "duration_ms")?),
                "at" => {
                    let Some(array) = value.get_ref().as_array() else {
                        let message = "expected [[at]] tables";
                        return Err(src.error(&value.span(), "at", message));
                    };
                    for (index, entry) in array.iter().enumerate() {
                        entries.push(src.entry(index, entry)?);
                    }
                }
                other => {
                    let message = "unknown field, expected `seed`, `duration_ms` or `[[at]]`";
                    return Err(src.error(&key.span(), other, message));
                }
            }
        }
        let Some(duration_ms) = duration_ms else {
            return Err(src.error(&(0..0), "duration_ms", "missing field `duration_ms`"));
        };
        if let Some(late) = entries.iter().find(|e| e.time_ms > duration_ms) {
            return Err(ScenarioError {
                origin: origin.to_owned(),
                line: Some(late.line),
                field: format!("at[{}].time_ms", late.index),
                message: format!(
                    "{} is after the end of the scenario (duration_ms = {duration_ms})",
                    late.time_ms
                ),
            });
        }
        entries.sort_by_key(|e| e.time_ms);
        Ok(Self {
            origin: origin.to_owned(),
            seed,
            duration_ms,
            entries,
        })
    }

    /// Runs the scenario on `config`'s hub in virtual time, writing the truth log to
    /// `out`. With `strict`, stops at the first violation.
    pub fn run(
        &self,
        config: &HubConfig,
        seed: u64,
        strict: bool,
        out: &mut impl Write,
    ) -> Result<Outcome, RunError> {
        let mut world = World::new(config, seed);
        let mut next = self.entries.iter().peekable();
        let mut violations = 0;
        loop {
            let now = world.now_ms();
            while let Some(entry) = next.next_if(|e| e.time_ms <= now) {
                world
                    .apply(entry.action.clone())
                    .map_err(|error| RunError::Refused {
                        origin: self.origin.clone(),
                        line: entry.line,
                        index: entry.index,
                        error,
                    })?;
            }
            if now.is_multiple_of(STATE_INTERVAL_MS) {
                write_line(out, now, "state", &world.state())?;
            }
            if now >= self.duration_ms {
                break;
            }
            world.step();
            // Nobody listens to the buses in virtual time.
            while world.poll_transmit().is_some() {}
            while let Some(violation) = world.poll_violation() {
                violations += 1;
                write_line(out, violation.time_ms, "violation", &violation)?;
                if strict {
                    out.flush()?;
                    return Ok(Outcome {
                        end_ms: world.now_ms(),
                        violations,
                        stopped_by: Some(violation),
                    });
                }
            }
        }
        out.flush()?;
        Ok(Outcome {
            end_ms: world.now_ms(),
            violations,
            stopped_by: None,
        })
    }
}

/// One log line: `{"time_ms": T, "<kind>": value}`.
fn write_line(
    out: &mut impl Write,
    time_ms: u64,
    kind: &str,
    value: &impl serde::Serialize,
) -> io::Result<()> {
    let mut line = serde_json::Map::new();
    line.insert("time_ms".into(), time_ms.into());
    line.insert(kind.into(), serde_json::to_value(value)?);
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `unplug`'s fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GunArgs {
    /// The gun.
    gun: u16,
}

/// `rfid`'s fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RfidArgs {
    /// The gun whose reader sees the card.
    gun: u16,
    /// The card's UID.
    id_tag: String,
}

/// `clear_fault`'s fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearArgs {
    /// The id `inject_fault` returned (faults are numbered from 1 in injection order).
    id: u64,
}

/// `send`'s fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    /// The cabinet whose bus carries it.
    cabinet: String,
    /// The frame, candump syntax.
    frame: String,
}

/// The actions by their `action` tag.
const ACTIONS: &str = "plug, unplug, rfid, inject_fault, clear_fault, send";

/// The scenario text, to turn spans into lines.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    /// The file name.
    origin: &'a str,
    /// Its text.
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: &Range<usize>, field: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            origin: self.origin.to_owned(),
            line: Some(self.line_of(span.start)),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A toml error at `field`, placed at its own span or else at `fallback`.
    fn de_error(
        &self,
        error: &toml::de::Error,
        field: String,
        fallback: Range<usize>,
    ) -> ScenarioError {
        let span = error.span().unwrap_or(fallback);
        self.error(&span, &field, error.message().trim_end())
    }

    /// One value of type `T`.
    fn value<T: DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'_>>,
        field: &str,
    ) -> Result<T, ScenarioError> {
        T::deserialize(ValueDeserializer::from(value.clone()))
            .map_err(|e| self.de_error(&e, field.to_owned(), value.span()))
    }

    /// One `[[at]]` entry: `time_ms`, `action`, and the action's fields.
    fn entry(&self, index: usize, entry: &Spanned<DeValue<'_>>) -> Result<Entry, ScenarioError> {
        let at = format!("at[{index}]");
        let span = entry.span();
        let Some(table) = entry.get_ref().as_table() else {
            return Err(self.error(&span, &at, "expected a table ([[at]])"));
        };
        let mut fields = table.clone();
        let field = |name: &str| format!("{at}.{name}");
        let missing =
            |name: &str| self.error(&span, &field(name), format!("missing field `{name}`"));
        let time_ms = fields.remove("time_ms").ok_or_else(|| missing("time_ms"))?;
        let time_ms = self.value::<u64>(&time_ms, &field("time_ms"))?;
        let tag = fields.remove("action").ok_or_else(|| missing("action"))?;
        let tag_name: String = self.value(&tag, &field("action"))?;
        let rest = Spanned::new(span.clone(), fields);
        let action = match tag_name.as_str() {
            "plug" => Action::Plug(self.args::<EvSpec>(rest, &at)?),
            "unplug" => Action::Unplug {
                gun: self.args::<GunArgs>(rest, &at)?.gun,
            },
            "rfid" => {
                let RfidArgs { gun, id_tag } = self.args(rest, &at)?;
                Action::Rfid { gun, id_tag }
            }
            "inject_fault" => Action::InjectFault(self.args::<FaultSpec>(rest, &at)?),
            "clear_fault" => Action::ClearFault {
                id: self.args::<ClearArgs>(rest, &at)?.id,
            },
            "send" => {
                let SendArgs { cabinet, frame } = self.args(rest, &at)?;
                Action::Send { cabinet, frame }
            }
            other => {
                let message = format!("unknown action `{other}`, expected one of {ACTIONS}");
                return Err(self.error(&tag.span(), &field("action"), message));
            }
        };
        Ok(Entry {
            time_ms,
            action,
            index,
            line: self.line_of(span.start),
        })
    }

    /// An action's fields as `T`, errors naming the field within `at`.
    fn args<T: DeserializeOwned>(
        &self,
        table: Spanned<DeTable<'_>>,
        at: &str,
    ) -> Result<T, ScenarioError> {
        let span = table.span();
        // The key spans, to place an unknown field's error on its line.
        let keys: Vec<(String, Range<usize>)> = table
            .get_ref()
            .keys()
            .map(|k| (k.get_ref().to_string(), k.span()))
            .collect();
        let deserializer = toml::de::Deserializer::from(table);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let message = error.inner().message().trim_end().to_owned();
            let mut field = match error.path().to_string() {
                root if root == "." || root == "?" => String::new(),
                path => path,
            };
            let named = ["missing field `", "unknown field `"]
                .iter()
                .find_map(|prefix| message.strip_prefix(prefix))
                .and_then(|rest| rest.split('`').next());
            let mut fallback = span.clone();
            if let Some(name) = named {
                if !field.ends_with(name) {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(name);
                }
                if let Some((_, key_span)) = keys.iter().find(|(key, _)| key == name) {
                    fallback = key_span.clone();
                }
            }
            let field = if field.is_empty() {
                at.to_owned()
            } else {
                format!("{at}.{field}")
            };
            // toml places type errors on the value; unknown keys on the table, so prefer
            // the key's own line when we know it.
            let span = match (named, error.inner().span()) {
                (None, Some(span)) => span,
                _ => fallback,
            };
            self.error(&span, &field, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUG: &str = r#"seed = 3
duration_ms = 1000

[[at]]
time_ms = 500
action = "unplug"
gun = 1

[[at]]
time_ms = 100
action = "plug"
gun = 0
battery_v = 400.0
soc = 20.0
max_current_a = 200.0
target_soc = 80.0
"#;

    fn refused(text: &str) -> ScenarioError {
        Scenario::parse(text, "s.toml").expect_err("refused")
    }

    #[test]
    fn entries_parse_in_time_order() {
        let scenario = Scenario::parse(PLUG, "s.toml").expect("parses");
        assert_eq!(scenario.seed, Some(3));
        assert_eq!(scenario.duration_ms, 1000);
        let times: Vec<u64> = scenario.entries.iter().map(|e| e.time_ms).collect();
        assert_eq!(times, [100, 500]);
        assert!(matches!(
            scenario.entries[0].action,
            Action::Plug(EvSpec { gun: 0, .. })
        ));
        assert_eq!(scenario.entries[0].line, 9);
        assert_eq!(scenario.entries[1].action, Action::Unplug { gun: 1 });
    }

    #[test]
    fn a_wrong_type_names_line_and_field() {
        let error = refused(&PLUG.replace("gun = 1", "gun = \"one\""));
        assert_eq!(
            (error.line, error.field.as_str()),
            (Some(7), "at[0].gun"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_field_names_its_line() {
        let error = refused(&PLUG.replace("soc = 20.0", "soc = 20.0\ncolour = \"red\""));
        assert_eq!(
            (error.line, error.field.as_str()),
            (Some(15), "at[1].colour"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("s.toml:15: at[1].colour: unknown field")
        );
    }

    #[test]
    fn a_missing_field_names_it() {
        let error = refused(&PLUG.replace("target_soc = 80.0\n", ""));
        assert_eq!(error.field, "at[1].target_soc", "{error}");
        let error = refused(&PLUG.replace("time_ms = 500\n", ""));
        assert_eq!(error.field, "at[0].time_ms", "{error}");
        let error = refused(&PLUG.replace("duration_ms = 1000\n", ""));
        assert_eq!(error.field, "duration_ms", "{error}");
    }

    #[test]
    fn an_unknown_action_lists_the_known_ones() {
        let error = refused(&PLUG.replace("\"unplug\"", "\"explode\""));
        assert_eq!(
            (error.line, error.field.as_str()),
            (Some(6), "at[0].action")
        );
        assert!(error.message.contains("inject_fault"), "{error}");
    }

    #[test]
    fn top_level_mistakes_are_named() {
        assert_eq!(refused(&PLUG.replace("seed", "sead")).field, "sead");
        assert_eq!(
            refused(&PLUG.replace("seed = 3", "seed = -3")).field,
            "seed"
        );
        let error = refused(&PLUG.replace("time_ms = 500", "time_ms = 5000"));
        assert_eq!(
            (error.line, error.field.as_str()),
            (Some(4), "at[0].time_ms")
        );
        let error = refused("duration_ms = [");
        assert_eq!(error.line, Some(1));
        assert!(error.message.starts_with("invalid TOML"), "{error}");
    }
}
