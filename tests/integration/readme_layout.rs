//! The README's layout table against the tree: every path it names exists, and every module of `src/deploy/`
//! (the one row that names each of its modules) is in its row.

use std::path::Path;

/// The layout table's rows: (the path column, the description column).
fn layout_rows(readme: &str) -> Vec<(String, String)> {
    let table = readme.split("Layout, one concept per module").nth(1).expect("the README's layout section");
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells.len() == 2 && cells[0].starts_with('`')).then(|| (cells[0].to_owned(), cells[1].to_owned()))
        })
        .collect()
}

/// `src/bin/{check,in,out}.rs` as its three paths.
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(open), Some(close)) => path[open + 1..close]
            .split(',')
            .map(|choice| format!("{}{choice}{}", &path[..open], &path[close + 1..]))
            .collect(),
        _ => vec![path.to_owned()],
    }
}

#[test]
fn the_readme_layout_names_paths_that_exist_and_every_deploy_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let rows = layout_rows(&readme);
    assert!(rows.len() >= 10, "the layout table was not found: {rows:?}");
    for (paths, _) in &rows {
        for path in paths.split(", ").map(|p| p.trim_matches('`')).flat_map(expand) {
            assert!(root.join(&path).exists(), "the README's layout names {path}, which does not exist");
        }
    }
    let deploy = &rows.iter().find(|(paths, _)| paths == "`src/deploy/`").expect("the src/deploy/ row").1;
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("src/deploy")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "mod") else { continue };
        if !deploy.contains(&format!("`{module}`")) {
            missing.push(module.to_owned());
        }
    }
    assert!(missing.is_empty(), "the README's src/deploy/ row does not name {missing:?}");
}
