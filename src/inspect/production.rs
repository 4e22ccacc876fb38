//! Which app serves production, found in one `GET /v3/apps?names=<app>,<app>-green&include=space.organization`.
//!
//! `<app>` in the source's organization and space is production. Between the two renames of a deploy's
//! housekeeping it may not exist; then production is the `<app>-green` whose journal says `swapped` or
//! `housekeeping`. A candidate that has not been swapped in (`pushing`, `verifying`, `swapping`) is never
//! production. Names match case-insensitively, as CF compares them.
//!
//! The list spans every space the user can see; the included spaces and organizations say which of the apps
//! live in the source's space, so no organization or space lookup is needed.

use std::collections::BTreeMap;

use crate::cf::apps::App;
use crate::cf::orgs::Organization;
use crate::cf::spaces::Space;
use crate::cf::{Error, ListParams, Listed, Result};
use crate::config::Source;
use crate::record::{Journal, Phase};

/// CF's largest page: the names filter matches a handful of apps, so one page holds them all.
const PER_PAGE: u32 = 5000;

/// The list query that fetches everything [`find`] needs in one request.
pub(crate) fn query(source: &Source) -> ListParams {
    ListParams::new()
        .filter("names", [source.names.production.clone(), source.names.green()])
        .include("space.organization")
        .per_page(PER_PAGE)
}

/// What serves production, according to the apps listed by [`query`].
#[derive(Debug)]
pub(crate) enum Production<'a> {
    /// `<app>` exists in the source's space.
    Named(&'a App),
    /// `<app>` is missing and `<app>-green` has been swapped in; its journal's phase.
    SwappedIn(&'a App, Phase),
    /// Nothing serves production; why, for the log.
    Nothing(String),
}

/// Whether two CF names are the same name (CF compares app, space and organization names ignoring case).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Finds production among `listed` (the answer to [`query`]).
pub(crate) fn find<'a>(listed: &'a Listed<App>, source: &Source) -> Result<Production<'a>> {
    let places = Places::from(listed)?;
    let in_space: Vec<&App> =
        listed.resources.iter().filter(|app| places.is_source_space(app.space_guid(), source)).collect::<Vec<_>>();
    let named = |name: &str| in_space.iter().copied().find(|app| same_name(&app.name, name));
    let production = &source.names.production;
    let green = source.names.green();

    if let Some(app) = named(production) {
        return Ok(Production::Named(app));
    }
    let Some(candidate) = named(&green) else {
        return Ok(Production::Nothing(nothing_here(listed, &places, source)));
    };
    let reason = match Journal::from_annotations(&candidate.metadata.annotations) {
        Some(Ok(journal)) if journal.phase >= Phase::Swapped => {
            return Ok(Production::SwappedIn(candidate, journal.phase));
        }
        Some(Ok(journal)) => format!(
            "'{production}' does not exist and '{green}' is a candidate that has not been swapped in \
             (deploy phase {}, by {})",
            journal.phase,
            journal.describe_holder()
        ),
        Some(Err(err)) => {
            format!("'{production}' does not exist and the deploy journal on '{green}' cannot be read ({err:#})")
        }
        None => format!(
            "'{production}' does not exist and '{green}' has no deploy journal (it was not made by this resource)"
        ),
    };
    Ok(Production::Nothing(reason))
}

/// "no app named …", naming the other places where apps of that name were seen (a typo in org or space).
fn nothing_here(listed: &Listed<App>, places: &Places, source: &Source) -> String {
    let mut message = format!(
        "no app named '{}' in organization '{}', space '{}'",
        source.names.production, source.organization, source.space
    );
    let elsewhere: Vec<String> = listed
        .resources
        .iter()
        .filter(|app| same_name(&app.name, &source.names.production))
        .filter_map(|app| places.describe(app.space_guid()))
        .collect();
    if !elsewhere.is_empty() {
        message.push_str(&format!(" (there is one in {})", elsewhere.join(", ")));
    }
    message
}

/// The included spaces and their organizations, by guid.
struct Places {
    spaces: BTreeMap<String, Space>,
    orgs: BTreeMap<String, Organization>,
}

impl Places {
    fn from(listed: &Listed<App>) -> Result<Places> {
        let spaces: BTreeMap<String, Space> =
            listed.included.get::<Space>("spaces")?.into_iter().map(|s| (s.guid.clone(), s)).collect();
        let orgs: BTreeMap<String, Organization> =
            listed.included.get::<Organization>("organizations")?.into_iter().map(|o| (o.guid.clone(), o)).collect();
        // Without the included objects every app would look like it lives elsewhere, and check would quietly
        // report nothing forever; an API that ignores `include` is an error instead.
        let missing = listed.resources.iter().find(|app| {
            app.space_guid()
                .and_then(|guid| spaces.get(guid))
                .and_then(Space::org_guid)
                .is_none_or(|org| !orgs.contains_key(org))
        });
        if let Some(app) = missing {
            return Err(Error::Decode {
                method: "GET".into(),
                path: "/v3/apps".into(),
                message: format!(
                    "the answer does not include the space and organization of app '{}' \
                     (include=space.organization)",
                    app.name
                ),
            });
        }
        Ok(Places { spaces, orgs })
    }

    fn is_source_space(&self, space_guid: Option<&str>, source: &Source) -> bool {
        let Some(space) = space_guid.and_then(|guid| self.spaces.get(guid)) else {
            return false;
        };
        let org = space.org_guid().and_then(|guid| self.orgs.get(guid));
        same_name(&space.name, &source.space) && org.is_some_and(|org| same_name(&org.name, &source.organization))
    }

    /// `organization 'o', space 's'`.
    fn describe(&self, space_guid: Option<&str>) -> Option<String> {
        let space = self.spaces.get(space_guid?)?;
        let org = self.orgs.get(space.org_guid()?)?;
        Some(format!("organization '{}', space '{}'", org.name, space.name))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::cf::paginate::Included;
    use crate::protocol::BuildEnv;

    fn source() -> Source {
        Source::parse(
            json!({"api": "https://api.example.com", "username": "ci-user", "password": "pw-not-shown-inspect",
                             "organization": "Org", "space": "prod", "app": "shop"}),
        )
        .unwrap()
    }

    fn app(guid: &str, name: &str, space: &str, annotations: Value) -> Value {
        json!({"guid": guid, "name": name, "state": "STARTED",
               "relationships": {"space": {"data": {"guid": space}},
                                 "current_droplet": {"data": {"guid": format!("{guid}-droplet")}}},
               "metadata": {"labels": {}, "annotations": annotations}})
    }

    fn listed(apps: Vec<Value>) -> Listed<App> {
        let included: Included = serde_json::from_value(json!({
            "spaces": [
                {"guid": "s-prod", "name": "prod", "relationships": {"organization": {"data": {"guid": "o-1"}}}},
                {"guid": "s-dev", "name": "dev", "relationships": {"organization": {"data": {"guid": "o-1"}}}},
                {"guid": "s-other", "name": "prod", "relationships": {"organization": {"data": {"guid": "o-2"}}}},
            ],
            "organizations": [{"guid": "o-1", "name": "org"}, {"guid": "o-2", "name": "other-org"}],
        }))
        .unwrap();
        Listed { resources: apps.into_iter().map(|a| serde_json::from_value(a).unwrap()).collect(), included }
    }

    fn journal(phase: Phase) -> Value {
        let mut journal = Journal::new(&BuildEnv::default(), Duration::from_secs(60));
        journal.phase = phase;
        let written: BTreeMap<String, String> =
            journal.to_annotations().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        serde_json::to_value(written).unwrap()
    }

    fn found_guid(listed: &Listed<App>) -> Option<String> {
        match find(listed, &source()).unwrap() {
            Production::Named(app) | Production::SwappedIn(app, _) => Some(app.guid.clone()),
            Production::Nothing(_) => None,
        }
    }

    #[test]
    fn the_named_app_in_the_source_space_wins_over_same_names_elsewhere() {
        let listed = listed(vec![
            app("elsewhere", "shop", "s-other", json!({})),
            app("dev", "shop", "s-dev", json!({})),
            app("prod", "SHOP", "s-prod", json!({})),
            app("green", "shop-green", "s-prod", journal(Phase::Housekeeping)),
        ]);
        assert_eq!(found_guid(&listed).as_deref(), Some("prod"));
        assert!(matches!(find(&listed, &source()).unwrap(), Production::Named(_)));
    }

    #[test]
    fn a_swapped_in_candidate_is_production_while_the_app_is_missing() {
        for phase in [Phase::Swapped, Phase::Housekeeping] {
            let listed = listed(vec![app("green", "shop-green", "s-prod", journal(phase))]);
            let production = find(&listed, &source()).unwrap();
            assert_eq!(found_guid(&listed).as_deref(), Some("green"));
            assert!(matches!(production, Production::SwappedIn(_, p) if p == phase));
        }
    }

    #[test]
    fn a_candidate_not_yet_swapped_in_is_never_production() {
        for phase in [Phase::Pushing, Phase::Verifying, Phase::Swapping] {
            let listed = listed(vec![app("green", "shop-green", "s-prod", journal(phase))]);
            let Production::Nothing(why) = find(&listed, &source()).unwrap() else { panic!("{phase}") };
            assert!(why.contains(&format!("deploy phase {phase}")), "{why}");
        }
    }

    #[test]
    fn a_green_app_without_journal_or_with_a_damaged_one_is_not_production() {
        let unmarked = listed(vec![app("green", "shop-green", "s-prod", json!({"other": "x"}))]);
        let Production::Nothing(why) = find(&unmarked, &source()).unwrap() else { panic!() };
        assert!(why.contains("has no deploy journal"), "{why}");

        let mut damaged = journal(Phase::Housekeeping);
        damaged[crate::record::journal::PHASE] = json!("exploding");
        let damaged = listed(vec![app("green", "shop-green", "s-prod", damaged)]);
        let Production::Nothing(why) = find(&damaged, &source()).unwrap() else { panic!() };
        assert!(why.contains("cannot be read") && why.contains("exploding"), "{why}");
    }

    #[test]
    fn nothing_names_where_apps_of_that_name_were_seen() {
        let listed = listed(vec![app("dev", "shop", "s-dev", json!({}))]);
        let Production::Nothing(why) = find(&listed, &source()).unwrap() else { panic!() };
        assert_eq!(
            why,
            "no app named 'shop' in organization 'Org', space 'prod' (there is one in organization 'org', space 'dev')"
        );
        let Production::Nothing(why) = find(&self::listed(vec![]), &source()).unwrap() else { panic!() };
        assert_eq!(why, "no app named 'shop' in organization 'Org', space 'prod'");
    }

    #[test]
    fn an_answer_without_the_included_spaces_is_an_error() {
        let mut listed = listed(vec![app("prod", "shop", "s-prod", json!({}))]);
        listed.included = Included::default();
        let err = find(&listed, &source()).unwrap_err().to_string();
        assert!(err.contains("does not include the space and organization of app 'shop'"), "{err}");
    }

    #[test]
    fn the_query_asks_for_both_names_and_their_places_in_one_page() {
        assert_eq!(query(&source()).to_query(), "names=shop,shop-green&include=space.organization&per_page=5000");
    }
}
