//! The server's version as a type: `server_version_num` read once, and a
//! named predicate for every feature the tool's SQL depends on, so no code
//! compares bare version numbers.

use std::fmt;

/// `server_version_num` of a PostgreSQL server (e.g. 150018 for 15.18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion(i32);

impl ServerVersion {
    /// The version whose `server_version_num` is `num`.
    pub const fn from_num(num: i32) -> ServerVersion {
        ServerVersion(num)
    }

    /// The first release of `major` (13, 14, …).
    pub const fn major_release(major: i32) -> ServerVersion {
        ServerVersion(major * 10000)
    }

    /// Reads `server_version_num` from the session.
    pub fn read(client: &mut postgres::Client) -> Result<ServerVersion, postgres::Error> {
        let row = client.query_typed_one("SELECT pg_catalog.current_setting('server_version_num')::int", &[])?;
        Ok(ServerVersion(row.get(0)))
    }

    pub const fn num(self) -> i32 {
        self.0
    }

    pub const fn major(self) -> i32 {
        self.0 / 10000
    }

    const fn at_least(self, major: i32) -> bool {
        self.0 >= major * 10000
    }

    /// `log_transaction_sample_rate` (12+).
    pub const fn has_log_transaction_sample_rate(self) -> bool {
        self.at_least(12)
    }

    /// `log_min_duration_sample` (13+).
    pub const fn has_log_min_duration_sample(self) -> bool {
        self.at_least(13)
    }

    /// Multirange types, made with each range type (14+).
    pub const fn has_multiranges(self) -> bool {
        self.at_least(14)
    }

    /// `client_connection_check_interval` (14+).
    pub const fn has_connection_check_interval(self) -> bool {
        self.at_least(14)
    }

    /// Views with `security_invoker` (15+).
    pub const fn has_security_invoker_views(self) -> bool {
        self.at_least(15)
    }

    /// `GRANT SET | ALTER SYSTEM ON PARAMETER` (`pg_parameter_acl`, 15+).
    pub const fn has_parameter_privileges(self) -> bool {
        self.at_least(15)
    }

    /// Role memberships with `SET` and `INHERIT` options of their own and a
    /// grantor that `GRANTED BY` can name (16+).
    pub const fn has_membership_options(self) -> bool {
        self.at_least(16)
    }

    /// The `MAINTAIN` privilege on relations (17+).
    pub const fn has_maintain(self) -> bool {
        self.at_least(17)
    }

    /// A condition an SQL statement can test: the session's server has `major`
    /// or later (for SQL that runs on several majors unchanged).
    pub fn sql_at_least(major: i32) -> String {
        format!("pg_catalog.current_setting('server_version_num')::int >= {}", major * 10000)
    }
}

impl fmt::Display for ServerVersion {
    /// `15.18`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major(), self.0 % 10000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_the_majors() {
        let v15 = ServerVersion::from_num(150018);
        assert_eq!((v15.major(), v15.to_string()), (15, "15.18".to_string()));
        assert!(v15.has_security_invoker_views() && v15.has_parameter_privileges() && v15.has_multiranges());
        assert!(!v15.has_membership_options() && !v15.has_maintain());
        let v13 = ServerVersion::major_release(13);
        assert!(v13.has_log_min_duration_sample() && !v13.has_connection_check_interval());
        assert!(ServerVersion::major_release(17).has_maintain());
        assert!(ServerVersion::from_num(160000).has_membership_options());
        assert!(!ServerVersion::from_num(159999).has_membership_options());
    }
}
