//! `--key value` arguments. A hand-rolled parser instead of clap keeps the generator's cold
//! build (which CI pays) short; unknown or unused keys are errors so a typo cannot silently
//! change a benchmark.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

pub struct Args {
    values: BTreeMap<String, String>,
    used: RefCell<BTreeSet<String>>,
}

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, got {a:?}"))?;
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                    (key.to_string(), v.clone())
                }
            };
            if values.insert(key.clone(), value).is_some() {
                return Err(format!("--{key} given twice"));
            }
        }
        Ok(Args {
            values,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    pub fn opt_str(&self, key: &str) -> Option<&str> {
        self.used.borrow_mut().insert(key.to_string());
        self.values.get(key).map(String::as_str)
    }

    pub fn str(&self, key: &str) -> Result<&str, String> {
        self.opt_str(key)
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.opt_str(key).unwrap_or(default)
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.opt_str(key) {
            None => Ok(None),
            Some(v) => parse_number(v)
                .map(Some)
                .ok_or_else(|| format!("--{key} {v:?}: not a number")),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, String> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.opt_f64(key)? {
            None => Ok(None),
            Some(x) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
            Some(x) => Err(format!("--{key} {x}: expected a whole number")),
        }
    }

    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, String> {
        Ok(self.opt_u64(key)?.unwrap_or(default))
    }

    pub fn check_unused(&self) -> Result<(), String> {
        let used = self.used.borrow();
        let unused: Vec<_> = self.values.keys().filter(|k| !used.contains(*k)).collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown arguments: {unused:?}"))
        }
    }
}

/// Numbers may carry a binary size suffix (`10G`, `256M`, `1k` = 1024) to keep the driver
/// script readable.
fn parse_number(v: &str) -> Option<f64> {
    let (digits, mult) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1024.0),
        'M' => (&v[..v.len() - 1], 1024.0 * 1024.0),
        'G' => (&v[..v.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (v, 1.0),
    };
    digits.parse::<f64>().ok().map(|x| x * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_forms() {
        let a = Args::parse(&["--size".into(), "1k".into(), "--bytes=2G".into()]).unwrap();
        assert_eq!(a.u64_or("size", 0).unwrap(), 1024);
        assert_eq!(a.u64_or("bytes", 0).unwrap(), 2 << 30);
        assert!(a.check_unused().is_ok());
        let b = Args::parse(&["--x".into(), "1".into()]).unwrap();
        assert!(b.check_unused().is_err());
    }
}
