//! The values an article sees: named input blobs, named output blobs, and the three
//! ways a run can fail (the `run-error` variant of the WIT world).

/// Why a run failed. The host reports it to the buyer as the run's result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// A required input was not handed in (names the input).
    #[error("missing input {0:?}")]
    MissingInput(String),
    /// An input is malformed or out of range: the buyer's fault, retrying will not help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The article could not do the work for another reason.
    #[error("failed: {0}")]
    Failed(String),
}

impl RunError {
    /// `RunError::InvalidInput` from anything printable.
    pub fn invalid_input(msg: impl std::fmt::Display) -> RunError {
        RunError::InvalidInput(msg.to_string())
    }

    /// `RunError::Failed` from anything printable.
    pub fn failed(msg: impl std::fmt::Display) -> RunError {
        RunError::Failed(msg.to_string())
    }
}

/// The named inputs of one run, in the order the host handed them in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    blobs: Vec<(String, Vec<u8>)>,
}

impl Inputs {
    /// No inputs; add some with [`Inputs::with`] (for native tests and benchmarks).
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Adds (or replaces) the input `name`.
    pub fn with(mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) -> Inputs {
        let name = name.into();
        let data = data.into();
        match self.blobs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = data,
            None => self.blobs.push((name, data)),
        }
        self
    }

    /// Builds inputs from (name, data) pairs; a later duplicate name wins.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Inputs {
        pairs.into_iter().fold(Inputs::new(), |acc, (n, d)| acc.with(n, d))
    }

    /// The bytes of input `name`, or [`RunError::MissingInput`].
    pub fn get(&self, name: &str) -> Result<&[u8], RunError> {
        self.get_opt(name).ok_or_else(|| RunError::MissingInput(name.to_string()))
    }

    /// The bytes of input `name`, if it was handed in.
    pub fn get_opt(&self, name: &str) -> Option<&[u8]> {
        self.blobs.iter().find(|(n, _)| n == name).map(|(_, d)| d.as_slice())
    }

    /// Input `name` as UTF-8 text; [`RunError::InvalidInput`] if it is not UTF-8.
    pub fn get_str(&self, name: &str) -> Result<&str, RunError> {
        let bytes = self.get(name)?;
        std::str::from_utf8(bytes)
            .map_err(|e| RunError::InvalidInput(format!("input {name:?} is not UTF-8: {e}")))
    }

    /// Moves input `name` out (no copy of a large blob), or [`RunError::MissingInput`].
    pub fn take(&mut self, name: &str) -> Result<Vec<u8>, RunError> {
        let i = self
            .blobs
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| RunError::MissingInput(name.to_string()))?;
        Ok(self.blobs.swap_remove(i).1)
    }

    /// The input names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.blobs.iter().map(|(n, _)| n.as_str())
    }
}

/// The named outputs of one run. The host accepts exactly the declared outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    blobs: Vec<(String, Vec<u8>)>,
}

impl Outputs {
    /// No outputs yet.
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// Adds (or replaces) the output `name`.
    pub fn with(mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) -> Outputs {
        self.insert(name, data);
        self
    }

    /// Adds (or replaces) the output `name`.
    pub fn insert(&mut self, name: impl Into<String>, data: impl Into<Vec<u8>>) {
        let name = name.into();
        let data = data.into();
        match self.blobs.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = data,
            None => self.blobs.push((name, data)),
        }
    }

    /// The bytes of output `name`, if set.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.blobs.iter().find(|(n, _)| n == name).map(|(_, d)| d.as_slice())
    }

    /// The output names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.blobs.iter().map(|(n, _)| n.as_str())
    }

    /// The (name, data) pairs, in order.
    pub fn into_pairs(self) -> impl Iterator<Item = (String, Vec<u8>)> {
        self.blobs.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_reports_the_missing_name() {
        let inputs = Inputs::new().with("a", "1");
        assert_eq!(inputs.get("a"), Ok(&b"1"[..]));
        assert_eq!(inputs.get("b"), Err(RunError::MissingInput("b".into())));
        assert_eq!(inputs.get_opt("b"), None);
    }

    #[test]
    fn get_str_refuses_invalid_utf8() {
        let inputs = Inputs::new().with("t", vec![0xff, 0xfe]);
        assert!(
            matches!(inputs.get_str("t"), Err(RunError::InvalidInput(m)) if m.contains("\"t\""))
        );
        assert!(matches!(inputs.get_str("u"), Err(RunError::MissingInput(_))));
    }

    #[test]
    fn later_duplicate_wins_and_take_moves_out() {
        let mut inputs = Inputs::from_pairs([
            ("a".to_string(), vec![1]),
            ("b".to_string(), vec![2]),
            ("a".to_string(), vec![3]),
        ]);
        assert_eq!(inputs.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(inputs.take("a"), Ok(vec![3]));
        assert_eq!(inputs.take("a"), Err(RunError::MissingInput("a".into())));
        assert_eq!(inputs.get("b"), Ok(&[2u8][..]));
    }

    #[test]
    fn outputs_keep_order_and_replace() {
        let out = Outputs::new().with("x", "1").with("y", vec![2u8]).with("x", "3");
        assert_eq!(out.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(out.get("x"), Some(&b"3"[..]));
        let pairs: Vec<_> = out.into_pairs().collect();
        assert_eq!(pairs, [("x".to_string(), b"3".to_vec()), ("y".to_string(), vec![2])]);
    }

    #[test]
    fn error_helpers_and_messages() {
        assert_eq!(RunError::invalid_input("bad"), RunError::InvalidInput("bad".into()));
        assert_eq!(RunError::failed(42), RunError::Failed("42".into()));
        assert_eq!(RunError::MissingInput("scene".into()).to_string(), "missing input \"scene\"");
    }
}
