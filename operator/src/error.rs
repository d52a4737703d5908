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
    pub fn write(verb: &'static str, kind: &str, name: &str, source: kube::Error) -> Self {
        Error::Write { verb, kind: kind.to_string(), name: name.to_string(), source }
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

/// What the API server said, without the debug dump kube's Display adds.
pub fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
