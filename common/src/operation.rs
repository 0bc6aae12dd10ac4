//! The catalogue of operation types and whether each one reads (query) or changes (modify) a host.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Whether an operation only reads host state or changes it; decides the notification subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Modify,
}

impl Kind {
    /// The subject token: `query` or `modify`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Modify => "modify",
        }
    }
}

macro_rules! operations {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every `operation.type` the system knows. A worker may support fewer (see its heartbeat).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum OperationType { $($variant),* }

        impl OperationType {
            /// All known operation types, in catalogue order.
            pub const ALL: &'static [OperationType] = &[$(OperationType::$variant),*];

            /// The wire name, e.g. `system.hostname.get`.
            pub fn as_str(self) -> &'static str {
                match self { $(OperationType::$variant => $name),* }
            }
        }
    };
}

operations! {
    SystemHostnameGet => "system.hostname.get",
    SystemUptimeGet => "system.uptime.get",
    SystemOsGet => "system.os.get",
    SystemLoadGet => "system.load.get",
    SystemMemoryGet => "system.memory.get",
    SystemDiskGet => "system.disk.get",
    SystemStatusGet => "system.status.get",
    NetworkDnsGet => "network.dns.get",
    NetworkDnsUpdate => "network.dns.update",
    NetworkPingDo => "network.ping.do",
    SystemRebootExecute => "system.reboot.execute",
    SystemShutdownExecute => "system.shutdown.execute",
    TestPingDo => "test.ping.do",
    TestEchoDo => "test.echo.do",
    TestSleepDo => "test.sleep.do",
    TestFailDo => "test.fail.do",
}

const QUERY_SUFFIXES: &[&str] = &[".get", ".query", ".read", ".status", ".do"];

impl OperationType {
    /// Query or modify, from the name's suffix as the contract defines it.
    pub fn kind(self) -> Kind {
        let name = self.as_str();
        if QUERY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            Kind::Query
        } else {
            Kind::Modify
        }
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperationType::ALL
            .iter()
            .copied()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| format!("unknown operation type '{s}'"))
    }
}

impl Serialize for OperationType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OperationType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_kinds() {
        for op in OperationType::ALL {
            assert_eq!(op.as_str().parse::<OperationType>(), Ok(*op));
        }
        let cases = [
            ("system.hostname.get", Kind::Query),
            ("network.ping.do", Kind::Query),
            ("test.fail.do", Kind::Query),
            ("network.dns.update", Kind::Modify),
            ("system.reboot.execute", Kind::Modify),
        ];
        for (name, kind) in cases {
            assert_eq!(
                name.parse::<OperationType>().map(|o| o.kind()),
                Ok(kind),
                "{name}"
            );
        }
        assert!("nope.x.get".parse::<OperationType>().is_err());
    }
}
