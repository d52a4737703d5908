use thiserror::Error;

/// Everything a sync can fail with. Each variant says what was being done.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{verb} {kind} {name}: {}", message(source))]
    Write {
        verb: &'static str,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("reading from the API server: {0}")]
    Read(#[from] kube::Error),

    /// A bug met in this sync; the set is retried like any failed sync, and no other
    /// set is affected.
    #[error("the sync panicked: {0}")]
    Panic(String),

    #[error("writing the status of PetSet {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },

    /// The write fence refused a request: this replica may no longer hold the leader
    /// Lease, and another replica may be writing.
    #[error("refused {method} {path}: this replica is not sure it holds the leader Lease")]
    Fenced { method: String, path: String },

    #[error("lost the leader Lease: {0}")]
    LeaseLost(String),

    #[error("the leader Lease: {0}")]
    Lease(#[source] kube::Error),

    /// Objects the set needs exist under their names and are someone else's: left
    /// alone, reported, and retried until their owner removes them.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NotOurs(Vec<Conflict>),
}

/// An object the set needs, found under its name and controlled by someone else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub kind: String,
    pub name: String,
    /// `<Kind> <name>` of its controller; None for an object with no controller.
    pub owner: Option<String>,
}

impl Conflict {
    pub fn of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> Conflict {
        let owner = crate::identity::controller_of(obj).map(|r| format!("{} {}", r.kind, r.name));
        Conflict { kind: K::kind(&()).into_owned(), name: obj.meta().name.clone().unwrap_or_default(), owner }
    }
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let owner = match &self.owner {
            Some(owner) => format!("is controlled by {owner}"),
            None => "was not made for this PetSet".into(),
        };
        write!(f, "{} {} exists and {owner}: left alone until it is removed", self.kind, self.name)
    }
}

impl Error {
    /// A write that failed, or that the write fence refused: that one is not the
    /// server's answer, and is counted and reported as what it is.
    pub fn write(verb: &'static str, kind: &str, name: &str, source: kube::Error) -> Self {
        fenced(&source).unwrap_or_else(|| Error::Write { verb, kind: kind.to_string(), name: name.to_string(), source })
    }

    pub fn status(name: String, source: kube::Error) -> Self {
        fenced(&source).unwrap_or(Error::Status { name, source })
    }

    /// The API server refused the write because of what the spec renders (invalid
    /// object, admission, quota): retrying soon will not help, a person must act.
    pub fn rejection(&self) -> Option<&kube::core::Status> {
        match self {
            Error::Write { source: kube::Error::Api(status), .. } if matches!(status.code, 400 | 403 | 422) => {
                Some(status)
            }
            _ => None,
        }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Write { .. } if self.rejection().is_some() => "rejected",
            Error::Write { .. } => "write",
            Error::Read(_) => "read",
            Error::Status { .. } => "status",
            Error::Panic(_) => "panic",
            Error::Fenced { .. } => "fenced",
            Error::LeaseLost(_) | Error::Lease(_) => "lease",
            Error::NotOurs(_) => "conflict",
        }
    }
}

/// The write fence's refusal, when that is what the client failed with.
pub fn fenced(error: &kube::Error) -> Option<Error> {
    match error {
        kube::Error::Service(e) => match e.downcast_ref::<Error>() {
            Some(Error::Fenced { method, path }) => Some(Error::Fenced { method: method.clone(), path: path.clone() }),
            _ => None,
        },
        _ => None,
    }
}

/// What the API server said, without the debug dump kube's Display adds.
pub fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_the_fence_refused_is_reported_as_fenced_not_as_a_failed_write() {
        let refusal = Error::Fenced { method: "POST".into(), path: "/api/v1/namespaces/ns/pods".into() };
        let error = Error::write("create", "Pod", "web-0", kube::Error::Service(Box::new(refusal)));
        assert!(matches!(&error, Error::Fenced { method, .. } if method == "POST"), "{error:?}");
        assert_eq!(error.metric_label(), "fenced");
        let refusal = Error::Fenced { method: "PATCH".into(), path: "/apis/petset.dev".into() };
        assert_eq!(Error::status("web".into(), kube::Error::Service(Box::new(refusal))).metric_label(), "fenced");

        let other = Error::write("create", "Pod", "web-0", kube::Error::Service("connection reset".into()));
        assert_eq!(other.metric_label(), "write");
    }
}
