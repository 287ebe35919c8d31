//! The condition language of the `filter` and `log_dedup` processors (see
//! the `filter` README): a small boolean language over attributes, with the
//! collector's OTTL forms for conditions (`attributes["k"]`, `IsMatch`,
//! `nil`), checked at startup so that a syntax error names its column.
//!
//! [`record`] evaluates conditions on OTLP log records, data points and
//! spans.

pub mod record;

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

/// A parsed condition.
#[derive(Debug)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// The attribute is present.
    Exists(String),
    /// A comparison of an attribute.
    Test(String, Test),
}

/// What an attribute is compared with.
#[derive(Debug)]
pub enum Test {
    /// `==` (`negate`: `!=`).
    Equals(Operand, bool),
    /// `<`, `<=`, `>`, `>=` as (less, equal-allowed).
    Order(f64, Ordering),
    /// `in a..b`.
    Range(f64, f64),
    /// `in 10.0.0.0/8`.
    Cidr(IpNet),
    /// `in [a, b]`.
    List(Vec<Operand>),
    /// `matches "regex"`.
    Matches(Regex),
}

/// A comparison direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    /// `<`.
    Less,
    /// `<=`.
    LessOrEqual,
    /// `>`.
    Greater,
    /// `>=`.
    GreaterOrEqual,
}

/// A literal.
#[derive(Debug, Clone)]
pub enum Operand {
    /// `"text"`.
    Text(String),
    /// `42`, `0.5`.
    Number(f64),
    /// `10.0.0.1`, `fd00::1`.
    Ip(IpAddr),
}

impl Operand {
    fn equals(&self, value: &str) -> bool {
        match self {
            Operand::Text(text) => text == value,
            Operand::Number(n) => value.parse::<f64>().is_ok_and(|v| v == *n),
            Operand::Ip(ip) => value.parse::<IpAddr>().is_ok_and(|v| v == *ip),
        }
    }
}

/// A syntax error: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based column of the offending token.
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Op(&'static str),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let column = text[..at].chars().count() + 1;
        let error = |message: &str| ParseError { column, message: message.into() };
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | '[' | ']' | ',' => {
                tokens.push((
                    column,
                    match c {
                        '(' => Token::Open,
                        ')' => Token::Close,
                        '[' => Token::OpenList,
                        ']' => Token::CloseList,
                        _ => Token::Comma,
                    },
                ));
                i += 1;
            }
            '"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    let Some(&(_, c)) = chars.get(i) else { return Err(error("unclosed string")) };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let Some(&(_, escaped)) = chars.get(i) else { return Err(error("unclosed string")) };
                            value.push(escaped);
                            i += 1;
                        }
                        c => value.push(c),
                    }
                }
                tokens.push((column, Token::Text(value)));
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).map(|&(_, c)| c);
                let (op, width) = match (c, next) {
                    ('=', Some('=')) => ("==", 2),
                    ('!', Some('=')) => ("!=", 2),
                    ('<', Some('=')) => ("<=", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('<', _) => ("<", 1),
                    ('>', _) => (">", 1),
                    _ => return Err(error(&format!("unexpected `{c}` (comparisons are ==, !=, <, <=, >, >=)"))),
                };
                tokens.push((column, Token::Op(op)));
                i += width;
            }
            c if is_word_char(c) => {
                let start = i;
                while i < chars.len() && is_word_char(chars[i].1) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().map(|&(_, c)| c).collect();
                tokens.push((column, Token::Word(word)));
            }
            other => return Err(error(&format!("unexpected `{other}`"))),
        }
    }
    Ok(tokens)
}

/// The collector's names of record fields, as this language names them.
const OTTL_FIELDS: &[(&str, &str)] = &[
    ("log.body", "body"),
    ("log.event_name", "event_name"),
    ("log.severity_text", "severity_text"),
    ("log.severity_number", "severity_number"),
];

/// The collector's severity constants (`severity_number < SEVERITY_NUMBER_WARN`).
const SEVERITY_NUMBERS: &[(&str, f64)] = &[
    ("SEVERITY_NUMBER_UNSPECIFIED", 0.0),
    ("SEVERITY_NUMBER_TRACE", 1.0),
    ("SEVERITY_NUMBER_DEBUG", 5.0),
    ("SEVERITY_NUMBER_INFO", 9.0),
    ("SEVERITY_NUMBER_WARN", 13.0),
    ("SEVERITY_NUMBER_ERROR", 17.0),
    ("SEVERITY_NUMBER_FATAL", 21.0),
];

/// The collector's metric type constants (`type == METRIC_DATA_TYPE_SUM`).
const METRIC_TYPES: &[&str] = &[
    "METRIC_DATA_TYPE_GAUGE",
    "METRIC_DATA_TYPE_SUM",
    "METRIC_DATA_TYPE_HISTOGRAM",
    "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM",
    "METRIC_DATA_TYPE_SUMMARY",
];

struct Parser {
    tokens: Vec<(usize, Token)>,
    position: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.position).map_or(self.end_column, |(c, _)| *c)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { column: self.column(), message: message.into() })
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.position += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.position += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("not") {
            self.position += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.position += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Token::Close) {
                return self.error("expected `)`");
            }
            self.position += 1;
            return Ok(inner);
        }
        if let Some(Token::Word(name)) = self.peek()
            && self.tokens.get(self.position + 1).map(|(_, t)| t) == Some(&Token::Open)
        {
            if name == "IsMatch" {
                return self.is_match();
            }
            return self.error(format!("`{name}(…)` is not known; the one function is IsMatch(target, \"regex\")"));
        }
        self.test()
    }

    /// The collector's `IsMatch(target, "regex")`.
    fn is_match(&mut self) -> Result<Expr, ParseError> {
        self.position += 2;
        let path = self.path()?;
        if self.peek() != Some(&Token::Comma) {
            return self.error("expected `,` and a quoted regular expression");
        }
        self.position += 1;
        let regex = self.regex("IsMatch")?;
        if self.peek() != Some(&Token::Close) {
            return self.error("expected `)`");
        }
        self.position += 1;
        Ok(Expr::Test(path, Test::Matches(regex)))
    }

    /// An attribute name, also in the collector's forms `attributes["key"]`
    /// and `resource.attributes["key"]`.
    fn path(&mut self) -> Result<String, ParseError> {
        let word = match self.peek() {
            Some(Token::Word(word)) if !["and", "or", "not", "in", "matches"].contains(&word.as_str()) => word.clone(),
            Some(_) => return self.error("expected an attribute name"),
            None => return self.error("expected an attribute name, found the end"),
        };
        if !word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
            return self.error(format!("`{word}` is not an attribute name"));
        }
        let column = self.column();
        self.position += 1;
        let context = if word == "attributes" { Some("") } else { word.strip_suffix(".attributes") };
        let index =
            (self.tokens.get(self.position), self.tokens.get(self.position + 1), self.tokens.get(self.position + 2));
        if let (Some(context), (Some((_, Token::OpenList)), Some((_, Token::Text(key))), Some((_, Token::CloseList)))) =
            (context, index)
        {
            let key = key.clone();
            self.position += 3;
            return match context {
                "" | "log" | "datapoint" | "span" | "spanevent" => Ok(key),
                "resource" => Ok(format!("resource.{key}")),
                other => Err(ParseError {
                    column,
                    message: format!(
                        "`{other}.attributes` cannot be read here; use attributes[\"…\"] or resource.attributes[\"…\"]"
                    ),
                }),
            };
        }
        Ok(OTTL_FIELDS.iter().find(|(ottl, _)| *ottl == word).map_or(word, |(_, field)| (*field).to_owned()))
    }

    fn regex(&mut self, after: &str) -> Result<Regex, ParseError> {
        let column = self.column();
        match self.peek().cloned() {
            Some(Token::Text(pattern)) => {
                self.position += 1;
                Regex::new(&pattern).map_err(|e| ParseError { column, message: format!("bad regular expression: {e}") })
            }
            _ => self.error(format!("`{after}` takes a quoted regular expression")),
        }
    }

    fn test(&mut self) -> Result<Expr, ParseError> {
        let path = self.path()?;
        let test = match self.peek().cloned() {
            Some(Token::Op(op)) => {
                self.position += 1;
                // The collector's `x == nil` / `x != nil`: absent / present.
                if matches!(op, "==" | "!=") && self.keyword("nil") {
                    self.position += 1;
                    let exists = Expr::Exists(path);
                    return Ok(if op == "==" { Expr::Not(Box::new(exists)) } else { exists });
                }
                let operand = self.operand()?;
                match op {
                    "==" | "!=" => Test::Equals(operand, op == "!="),
                    _ => {
                        let Operand::Number(n) = operand else {
                            return Err(ParseError {
                                column: self.tokens[self.position - 1].0,
                                message: format!("`{op}` compares numbers"),
                            });
                        };
                        let ordering = match op {
                            "<" => Ordering::Less,
                            "<=" => Ordering::LessOrEqual,
                            ">" => Ordering::Greater,
                            _ => Ordering::GreaterOrEqual,
                        };
                        Test::Order(n, ordering)
                    }
                }
            }
            Some(Token::Word(word)) if word == "in" => {
                self.position += 1;
                self.membership()?
            }
            Some(Token::Word(word)) if word == "matches" => {
                self.position += 1;
                Test::Matches(self.regex("matches")?)
            }
            _ => return Ok(Expr::Exists(path)),
        };
        Ok(Expr::Test(path, test))
    }

    fn membership(&mut self) -> Result<Test, ParseError> {
        let column = self.column();
        match self.peek().cloned() {
            Some(Token::OpenList) => {
                self.position += 1;
                let mut items = Vec::new();
                loop {
                    items.push(self.operand()?);
                    match self.peek() {
                        Some(Token::Comma) => self.position += 1,
                        Some(Token::CloseList) => {
                            self.position += 1;
                            return Ok(Test::List(items));
                        }
                        _ => return self.error("expected `,` or `]`"),
                    }
                }
            }
            Some(Token::Word(word)) if word.contains('/') => {
                self.position += 1;
                word.parse()
                    .map(Test::Cidr)
                    .map_err(|_| ParseError { column, message: format!("`{word}` is not a CIDR") })
            }
            Some(Token::Word(word)) if word.contains("..") => {
                self.position += 1;
                let bad = || ParseError { column, message: format!("`{word}` is not a range like 8000..8100") };
                let (low, high) = word.split_once("..").ok_or_else(bad)?;
                let (low, high) = (low.parse::<f64>().map_err(|_| bad())?, high.parse::<f64>().map_err(|_| bad())?);
                if low > high {
                    return Err(ParseError { column, message: format!("range `{word}` is empty") });
                }
                Ok(Test::Range(low, high))
            }
            _ => self.error("`in` takes a CIDR (10.0.0.0/8), a range (8000..8100) or a list ([a, b])"),
        }
    }

    fn operand(&mut self) -> Result<Operand, ParseError> {
        let column = self.column();
        let operand = match self.peek().cloned() {
            Some(Token::Text(text)) => Operand::Text(text),
            Some(Token::Word(word)) => {
                if let Ok(n) = word.parse::<f64>() {
                    Operand::Number(n)
                } else if let Ok(ip) = word.parse::<IpAddr>() {
                    Operand::Ip(ip)
                } else if word == "true" || word == "false" {
                    Operand::Text(word)
                } else if let Some((_, number)) = SEVERITY_NUMBERS.iter().find(|(name, _)| *name == word) {
                    Operand::Number(*number)
                } else if METRIC_TYPES.contains(&word.as_str()) {
                    Operand::Text(word)
                } else {
                    return Err(ParseError {
                        column,
                        message: format!("`{word}` is not a value (quote text: \"{word}\")"),
                    });
                }
            }
            _ => return self.error("expected a value"),
        };
        self.position += 1;
        Ok(operand)
    }
}

/// The syntax errors of conditions given with their config paths, as
/// `Validate` reports them (`path`, `column …: why: condition`).
pub fn problems<'a>(conditions: impl IntoIterator<Item = (String, &'a String)>) -> Vec<(String, String)> {
    conditions
        .into_iter()
        .filter_map(|(path, condition)| parse(condition).err().map(|e| (path, format!("{e}: {condition}"))))
        .collect()
}

/// Parses conditions that were validated (with [`problems`]): every one parses.
pub fn parse_all(conditions: &[String]) -> Vec<Expr> {
    conditions.iter().filter_map(|c| parse(c).ok()).collect()
}

/// Parses a condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, position: 0, end_column: text.chars().count() + 1 };
    let expr = parser.or()?;
    if parser.position < parser.tokens.len() {
        return parser.error("expected `and`, `or` or the end");
    }
    Ok(expr)
}

impl Expr {
    /// Evaluates against `lookup` (an attribute's value as text, if present).
    pub fn matches(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Expr::And(a, b) => a.matches(lookup) && b.matches(lookup),
            Expr::Or(a, b) => a.matches(lookup) || b.matches(lookup),
            Expr::Not(inner) => !inner.matches(lookup),
            Expr::Exists(path) => lookup(path).is_some(),
            Expr::Test(path, test) => {
                let value = lookup(path);
                match (test, value) {
                    (Test::Equals(operand, negate), Some(value)) => operand.equals(&value) != *negate,
                    // A missing attribute equals nothing, so `!=` holds.
                    (Test::Equals(_, negate), None) => *negate,
                    (_, None) => false,
                    (Test::Order(n, ordering), Some(value)) => value.parse::<f64>().is_ok_and(|v| match ordering {
                        Ordering::Less => v < *n,
                        Ordering::LessOrEqual => v <= *n,
                        Ordering::Greater => v > *n,
                        Ordering::GreaterOrEqual => v >= *n,
                    }),
                    (Test::Range(low, high), Some(value)) => {
                        value.parse::<f64>().is_ok_and(|v| v >= *low && v <= *high)
                    }
                    (Test::Cidr(net), Some(value)) => value.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
                    (Test::List(items), Some(value)) => items.iter().any(|item| item.equals(&value)),
                    (Test::Matches(regex), Some(value)) => regex.is_match(&value),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
