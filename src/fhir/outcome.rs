//! OperationOutcome construction: the body of every error and of `Prefer: return=OperationOutcome`.

use serde_json::{json, Value};

/// Issue severity, as in the R4 `issue-severity` value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    /// A code from the R4 `issue-type` value set (`invalid`, `not-found`, ...).
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath-style location of the element at fault, if any.
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.as_str(),
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expr) = &self.expression {
            issue["expression"] = json!([expr]);
        }
        issue
    }
}

/// Builds an OperationOutcome resource from its issues.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}

/// An OperationOutcome with a single informational issue.
pub fn information(diagnostics: impl Into<String>) -> Value {
    operation_outcome(&[
        Issue::error("informational", diagnostics).with_severity(Severity::Information)
    ])
}
