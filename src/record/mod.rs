//! The record this resource keeps on Cloud Foundry objects: the deploy journal on `<app>-green` (the lock), the
//! audit annotations on production, the candidate label and the create-id label of non-idempotent creates.
//!
//! Every key lives under one prefix of our own in DNS form, as the Cloud Controller requires of a prefixed
//! label or annotation key (`app/messages/metadata_validator_helper.rb`: the prefix must match
//! `DomainDecorator::DOMAIN_REGEX`, so it needs a dot; at most 253 characters; `cloudfoundry.org` is reserved;
//! names at most 63 characters of `[A-Za-z0-9_.-]`, starting and ending alphanumeric). Label values obey the
//! same character rules, annotation values are at most 5,000 characters.

pub mod audit;
pub mod journal;

use std::collections::BTreeMap;

use crate::cf::apps::AppUpdate;
use crate::cf::types::MetadataPatch;

pub use audit::Audit;
pub use journal::{Journal, Phase};

/// The prefix, as a literal, for building the keys with `concat!`.
macro_rules! prefix {
    () => {
        "cf-blue-green-resource.concourse/"
    };
}
pub(crate) use prefix;

/// The prefix of every annotation and label this resource writes.
pub const PREFIX: &str = prefix!();
/// The label that marks a candidate, for `label_selector` lookups.
pub const ROLE_LABEL: &str = concat!(prefix!(), "role");
/// The value of [`ROLE_LABEL`] on a candidate.
pub const CANDIDATE_ROLE: &str = "candidate";
/// A label with a random id set on packages and builds at creation, so a create whose answer was lost can be
/// found again instead of being made twice.
pub const CREATE_ID_LABEL: &str = concat!(prefix!(), "create-id");

/// The label and journal annotations a candidate is created (or renamed) with.
pub fn candidate_metadata(journal: &Journal) -> MetadataPatch {
    MetadataPatch {
        labels: BTreeMap::from([(ROLE_LABEL.to_owned(), Some(CANDIDATE_ROLE.to_owned()))]),
        annotations: journal.to_annotations().into_iter().filter(|(_, v)| v.is_some()).collect(),
    }
}

/// Renames a candidate to `name` and drops its journal and candidate label, plus `annotations` on top: it no
/// longer holds the lock. Also drops journal keys a late journal write left on an app that was a candidate once.
pub fn release(name: &str, annotations: BTreeMap<String, Option<String>>) -> AppUpdate {
    let mut all = journal::cleared();
    all.extend(annotations);
    AppUpdate {
        name: Some(name.to_owned()),
        metadata: Some(MetadataPatch { labels: BTreeMap::from([(ROLE_LABEL.to_owned(), None)]), annotations: all }),
        ..AppUpdate::default()
    }
}

/// Whether a label or annotation key is one of ours (user metadata is everything else).
pub fn is_ours(key: &str) -> bool {
    key.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::BuildEnv;

    /// CC's key rules (metadata_validator_helper.rb, domain_decorator.rb), for the keys we write.
    fn cc_accepts_key(key: &str) -> bool {
        let Some((prefix, name)) = key.split_once('/') else { return false };
        let label = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let name_ok = (1..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
        prefix.len() <= 253
            && prefix.split('.').count() >= 2
            && prefix.split('.').all(label)
            && !prefix.eq_ignore_ascii_case("cloudfoundry.org")
            && name_ok
    }

    #[test]
    fn every_key_we_write_is_one_the_cloud_controller_accepts() {
        let build = BuildEnv { url: Some("https://ci.example.com/builds/1".into()), ..BuildEnv::default() };
        let journal = Journal::new(&build, Duration::from_secs(60));
        let mut audit = Audit::new(&build, "id", "droplet", Some("abc".into()));
        audit.bits_digest = Some("sha1:0".into());
        audit.manifest_digest = Some("sha1:1".into());
        let keys: Vec<String> = journal
            .to_annotations()
            .into_keys()
            .chain(audit.to_annotations().into_keys())
            .chain([ROLE_LABEL.to_owned(), CREATE_ID_LABEL.to_owned()])
            .collect();
        assert!(keys.len() > 20);
        for key in keys {
            assert!(cc_accepts_key(&key), "{key} breaks the Cloud Controller's metadata key rules");
            assert!(is_ours(&key));
        }
        assert!(!cc_accepts_key("blue-green/phase"), "a dotless prefix is what CC refuses");
    }

    #[test]
    fn release_clears_the_journal_and_the_candidate_label() {
        let update = release("myapp-previous", BTreeMap::from([("x.y/z".to_owned(), Some("1".to_owned()))]));
        let metadata = update.metadata.unwrap();
        assert_eq!(update.name.as_deref(), Some("myapp-previous"));
        assert_eq!(metadata.labels.get(ROLE_LABEL), Some(&None));
        assert!(journal::cleared().keys().all(|k| metadata.annotations.get(k) == Some(&None)));
        assert_eq!(metadata.annotations.get("x.y/z"), Some(&Some("1".to_owned())));
    }
}
