//! cf-blue-green-resource: a Concourse resource type that deploys to Cloud Foundry blue-green.
