//! Chat templates (Jinja, as in `tokenizer_config.json` / GGUF `tokenizer.chat_template`),
//! rendered with minijinja in a sandbox: no loader (no `include`/`import` of files), a fuel limit
//! on executed instructions, a recursion limit and a cap on the output size. Settings follow
//! `transformers` (`trim_blocks`, `lstrip_blocks`), plus `raise_exception`, `strftime_now`,
//! `tojson` and a few Python string/dict methods (`strip`, `startswith`, `split`, `items`, ...).
//!
//! Limits: string repetition is capped by minijinja at 100 MB per operation, but a template that
//! builds huge strings into a variable (not the output) is bounded only by fuel.

use std::io::Write;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde::Serialize;

use crate::error::{ModelError, Result};

/// Instructions one render may execute.
const FUEL: u64 = 2_000_000;
/// Nesting depth of loops, macros and calls.
const RECURSION_LIMIT: usize = 100;
/// Largest rendered prompt, in bytes.
const MAX_OUTPUT: usize = 16 << 20;
const NAME: &str = "chat_template";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The message text.
    pub content: String,
    /// An assistant turn's tool calls, in OpenAI's shape (`[{"id", "type": "function",
    /// "function": {"name", "arguments"}}]`), for templates that render them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A tool turn's answer to this call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .finish()
    }
}

fn template_err(e: Error) -> ModelError {
    if e.kind() == ErrorKind::InvalidOperation {
        if let Some(msg) = e.detail().and_then(|d| d.strip_prefix("raise_exception: ")) {
            return ModelError::Template(format!("template raised an exception: {msg}"));
        }
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    ModelError::Template(msg)
}

impl ChatTemplate {
    /// Compiles `source`; syntax errors are reported here, not at render time.
    pub fn new(source: String) -> Result<Self> {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, Error> {
                Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("raise_exception: {msg}"),
                ))
            },
        );
        env.add_function("strftime_now", |fmt: String| -> String {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            strftime(&fmt, secs)
        });
        env.set_unknown_method_callback(pycompat);
        env.add_template_owned(NAME, source.clone())
            .map_err(template_err)?;
        Ok(Self { env, source })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` as `transformers`' `apply_chat_template(tokenize=False)` does.
    /// `tools` and `documents` are defined as none.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String> {
        let tmpl = self.env.get_template(NAME).map_err(template_err)?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
            tools => Value::from(()),
            documents => Value::from(()),
        };
        let mut out = CappedWriter {
            buf: Vec::new(),
            overflow: false,
        };
        tmpl.render_captured_to(ctx, &mut out).map_err(|e| {
            if out.overflow {
                ModelError::Template(format!("rendered prompt exceeds {MAX_OUTPUT} bytes"))
            } else {
                template_err(e)
            }
        })?;
        String::from_utf8(out.buf).map_err(|e| ModelError::Template(format!("output is not UTF-8: {e}")))
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct CappedWriter {
    buf: Vec<u8>,
    overflow: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            self.overflow = true;
            return Err(std::io::Error::other("output size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn arg_str<'a>(args: &'a [Value], i: usize, method: &str) -> std::result::Result<Option<&'a str>, Error> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.is_none() || v.is_undefined() => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("{method}: argument {} must be a string", i + 1),
            )
        }),
    }
}

/// Python `str`/`dict` methods templates commonly call.
fn pycompat(state: &State, value: &Value, method: &str, args: &[Value]) -> std::result::Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let chars = |i| arg_str(args, i, method);
        let set = |c: Option<&str>| -> Vec<char> { c.map(|c| c.chars().collect()).unwrap_or_default() };
        return Ok(match method {
            "strip" => match chars(0)? {
                None => Value::from(s.trim()),
                c => Value::from(s.trim_matches(set(c).as_slice())),
            },
            "lstrip" => match chars(0)? {
                None => Value::from(s.trim_start()),
                c => Value::from(s.trim_start_matches(set(c).as_slice())),
            },
            "rstrip" => match chars(0)? {
                None => Value::from(s.trim_end()),
                c => Value::from(s.trim_end_matches(set(c).as_slice())),
            },
            "startswith" => Value::from(s.starts_with(chars(0)?.unwrap_or(""))),
            "endswith" => Value::from(s.ends_with(chars(0)?.unwrap_or(""))),
            "upper" => Value::from(s.to_uppercase()),
            "lower" => Value::from(s.to_lowercase()),
            "title" | "capitalize" => state.apply_filter(method, std::slice::from_ref(value))?,
            "replace" => Value::from(s.replace(chars(0)?.unwrap_or(""), chars(1)?.unwrap_or(""))),
            "find" => Value::from(
                s.find(chars(0)?.unwrap_or(""))
                    .map_or(-1, |b| s[..b].chars().count() as i64),
            ),
            "count" => Value::from(s.matches(chars(0)?.unwrap_or("")).count()),
            "split" => {
                let parts: Vec<Value> = match chars(0)? {
                    None => s.split_whitespace().map(Value::from).collect(),
                    Some("") => {
                        return Err(Error::new(ErrorKind::InvalidOperation, "split: empty separator"))
                    }
                    Some(sep) => s.split(sep).map(Value::from).collect(),
                };
                Value::from(parts)
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        });
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => state.apply_filter("items", std::slice::from_ref(value)),
            "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let keys: Vec<Value> = value.try_iter()?.collect();
                Ok(Value::from(
                    keys.iter()
                        .map(|k| value.get_item(k))
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                ))
            }
            "get" => {
                let key = args.first().cloned().unwrap_or_default();
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    v
                })
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        };
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

/// A small UTC `strftime`: `%Y %y %m %d %e %H %I %M %S %p %j %a %A %b %B %%`.
fn strftime(fmt: &str, unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let d = doy_mar - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let wday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('I') => out.push_str(&format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 })),
            Some('M') => out.push_str(&format!("{mi:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-07-26 13:05:09 UTC, a Friday.
        assert_eq!(
            strftime("%d %b %Y %H:%M:%S %a %j", 1_721_999_109),
            "26 Jul 2024 13:05:09 Fri 208"
        );
        assert_eq!(strftime("%Y-%m-%d %A %B %%", 0), "1970-01-01 Thursday January %");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }

    #[test]
    fn python_string_methods() {
        let t = ChatTemplate::new(
            "{{ '  hi  '.strip() }}|{{ 'abc'.startswith('a') }}|{{ 'a,b'.split(',')|length }}|{{ 'xAx'.lower() }}|{{ {'k': 1}.get('z', 5) }}".into(),
        )
        .unwrap();
        assert_eq!(t.render(&[], false, "", "").unwrap(), "hi|True|2|xax|5");
    }
}
