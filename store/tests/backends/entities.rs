//! Customers, teams, keys and providers: CRUD, references, lookups, encrypted secrets.

use store::keys::{hash_key, verify_key};
use store::{CustomerInput, Error, KeyInput, Limits, ProviderInput, SecretBox, TeamInput};
use vocab::BudgetPeriod;

use crate::{budget, new_customer, new_team, TestDb, NOW};

backend_tests!(
    migrations_are_idempotent,
    customer_crud,
    team_crud_and_references,
    key_crud_and_lookup,
    key_cache_ttl_round_trips,
    duplicate_key_hash_conflicts,
    provider_secrets_are_encrypted,
);

async fn migrations_are_idempotent(db: TestDb) {
    // Opening again re-runs the migrator, which must find nothing to do.
    let again = db.another(None).await;
    let c = new_customer(&again, "acme", None).await;
    assert_eq!(
        db.store.get_customer(&c.id).await.unwrap().unwrap().name,
        "acme"
    );
    drop(again);
    let third = db.another(None).await;
    assert_eq!(third.list_customers().await.unwrap().len(), 1);
}

async fn customer_crud(db: TestDb) {
    let s = &db.store;
    let limits = Limits {
        rpm: Some(60),
        tpd: Some(u64::from(u32::MAX) * 4),
        ..Default::default()
    };
    let c = s
        .create_customer(&CustomerInput {
            name: "acme".into(),
            budget: budget(BudgetPeriod::Monthly, 5_000_000_000),
            limits,
        })
        .await
        .unwrap();
    assert_eq!(c.id.len(), 36);
    assert_eq!(c.limits, limits);
    assert_eq!(c.budget, budget(BudgetPeriod::Monthly, 5_000_000_000));
    assert_eq!(s.get_customer(&c.id).await.unwrap(), Some(c.clone()));

    let c2 = new_customer(s, "globex", None).await;
    let all = s.list_customers().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&c) && all.contains(&c2));

    let updated = s
        .update_customer(
            &c.id,
            &CustomerInput {
                name: "acme corp".into(),
                budget: None,
                limits: Limits::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "acme corp");
    assert_eq!(updated.budget, None);
    assert_eq!(updated.created_at, c.created_at);
    assert_eq!(s.get_customer(&c.id).await.unwrap(), Some(updated));

    s.delete_customer(&c.id).await.unwrap();
    assert_eq!(s.get_customer(&c.id).await.unwrap(), None);
    assert!(matches!(
        s.delete_customer(&c.id).await,
        Err(Error::NotFound {
            kind: "customer",
            ..
        })
    ));
    assert!(matches!(
        s.update_customer("nope", &CustomerInput::default()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.create_customer(&CustomerInput {
            name: "x".into(),
            budget: budget(BudgetPeriod::Daily, u64::MAX),
            limits: Limits::default(),
        })
        .await,
        Err(Error::OutOfRange(_))
    ));
}

async fn team_crud_and_references(db: TestDb) {
    let s = &db.store;
    let missing = s
        .create_team(&TeamInput {
            name: "orphan".into(),
            customer_id: Some("no-such-customer".into()),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(missing, Err(Error::InvalidReference(_))),
        "{missing:?}"
    );

    let c = new_customer(s, "acme", None).await;
    let t = s
        .create_team(&TeamInput {
            name: "research".into(),
            customer_id: Some(c.id.clone()),
            budget: budget(BudgetPeriod::Weekly, 42),
            limits: Limits {
                rph: Some(1000),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    assert_eq!(s.get_team(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.list_teams().await.unwrap(), vec![t.clone()]);

    // A customer with teams cannot be deleted.
    assert!(matches!(
        s.delete_customer(&c.id).await,
        Err(Error::InUse {
            kind: "customer",
            ..
        })
    ));

    let moved = s
        .update_team(
            &t.id,
            &TeamInput {
                name: "research".into(),
                customer_id: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.customer_id, None);
    assert!(matches!(
        s.update_team(
            &t.id,
            &TeamInput {
                name: "r".into(),
                customer_id: Some("ghost".into()),
                ..Default::default()
            }
        )
        .await,
        Err(Error::InvalidReference(_))
    ));
    s.delete_customer(&c.id).await.unwrap();
    s.delete_team(&t.id).await.unwrap();
    assert!(s.list_teams().await.unwrap().is_empty());
}

async fn key_crud_and_lookup(db: TestDb) {
    let s = &db.store;
    let team = new_team(s, "eng").await;
    let input = KeyInput {
        name: "ci".into(),
        team_id: Some(team.id.clone()),
        allowed_providers: vec!["openai".into(), "anthropic".into()],
        allowed_models: vec!["gpt-4o".into()],
        budget: budget(BudgetPeriod::Daily, 1_000_000),
        limits: Limits {
            rpm: Some(10),
            tpm: Some(10_000),
            ..Default::default()
        },
        expires_at: Some(NOW + 3600),
        active: true,
        cache_ttl_secs: Some(300),
    };
    let created = s.create_key(&input).await.unwrap();
    let k = &created.key;
    assert!(created.secret.starts_with("rg-"));
    assert!(!format!("{created:?}").contains(&created.secret));
    assert_eq!(k.key_prefix, &created.secret[..8]);
    assert!(verify_key(&created.secret, &k.key_hash));
    assert_eq!(k.allowed_providers, input.allowed_providers);
    assert_eq!(k.allowed_models, input.allowed_models);
    assert_eq!(k.expires_at, Some(NOW + 3600));
    assert_eq!(k.cache_ttl_secs, Some(300));
    assert!(k.is_usable(NOW) && !k.is_usable(NOW + 3600));

    let found = s
        .find_key_by_hash(&hash_key(&created.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&found, k);
    assert_eq!(s.get_key(&k.id).await.unwrap().as_ref(), Some(k));
    assert_eq!(
        s.find_key_by_hash(&hash_key("rg-wrong")).await.unwrap(),
        None
    );

    // A team with keys cannot be deleted.
    assert!(matches!(
        s.delete_team(&team.id).await,
        Err(Error::InUse { kind: "team", .. })
    ));
    assert!(matches!(
        s.create_key(&KeyInput {
            name: "bad".into(),
            team_id: Some("ghost".into()),
            ..Default::default()
        })
        .await,
        Err(Error::InvalidReference(_))
    ));

    let upd = s
        .update_key(
            &k.id,
            &KeyInput {
                name: "ci-disabled".into(),
                active: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!upd.active && upd.allowed_models.is_empty() && upd.team_id.is_none());
    assert_eq!(upd.key_hash, k.key_hash, "update keeps the secret");
    assert!(!upd.is_usable(NOW));
    assert_eq!(s.list_keys().await.unwrap(), vec![upd.clone()]);

    s.delete_key(&k.id).await.unwrap();
    assert_eq!(s.get_key(&k.id).await.unwrap(), None);
    s.delete_team(&team.id).await.unwrap();
}

/// A key's cache setting: unset (follow the configuration), 0 (never cache) and a TTL are
/// three different values, kept through create, update, get, list and lookup by hash.
async fn key_cache_ttl_round_trips(db: TestDb) {
    let s = &db.store;
    let unset = s.create_key(&KeyInput::default()).await.unwrap();
    assert_eq!(unset.key.cache_ttl_secs, None);
    let created = s
        .create_key(&KeyInput {
            name: "cached".into(),
            cache_ttl_secs: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    let k = &created.key;
    assert_eq!(k.cache_ttl_secs, Some(0));
    assert_eq!(
        s.get_key(&k.id).await.unwrap().unwrap().cache_ttl_secs,
        Some(0)
    );

    let year = 31_536_000;
    let mut input = KeyInput {
        name: "cached".into(),
        cache_ttl_secs: Some(year),
        ..Default::default()
    };
    let upd = s.update_key(&k.id, &input).await.unwrap();
    assert_eq!(upd.cache_ttl_secs, Some(year));
    assert_eq!(upd.created_at, k.created_at);
    assert!(upd.active);
    let found = s
        .find_key_by_hash(&hash_key(&created.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, upd);

    input.cache_ttl_secs = None;
    let cleared = s.update_key(&k.id, &input).await.unwrap();
    assert_eq!(cleared.cache_ttl_secs, None);
    let listed: Vec<_> = s
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.cache_ttl_secs)
        .collect();
    assert_eq!(listed, [None, None]);
}

async fn duplicate_key_hash_conflicts(db: TestDb) {
    let s = &db.store;
    let input = KeyInput {
        name: "imported".into(),
        ..Default::default()
    };
    s.create_key_with_secret(&input, "rg-imported-secret")
        .await
        .unwrap();
    let dup = s.create_key_with_secret(&input, "rg-imported-secret").await;
    assert!(matches!(dup, Err(Error::Conflict(_))), "{dup:?}");
    assert_eq!(s.list_keys().await.unwrap().len(), 1);
}

async fn provider_secrets_are_encrypted(db: TestDb) {
    let s = &db.store;
    let input = ProviderInput {
        kind: "openai".into(),
        base_url: "https://api.example.test/v1".into(),
        config_json: r#"{"timeout_ms":30000}"#.into(),
        secret: Some("sk-test-0123456789abcd".into()),
    };
    let p = s.create_provider("openai-main", &input).await.unwrap();
    assert_eq!(p.secret.as_deref(), Some("sk-test-0123456789abcd"));
    assert!(!format!("{p:?}").contains("0123456789"));
    let got = s.get_provider("openai-main").await.unwrap().unwrap();
    assert_eq!(got, p);
    assert!(matches!(
        s.create_provider("openai-main", &input).await,
        Err(Error::Conflict(_))
    ));

    // The stored form is ciphertext: other keys (or none) cannot read it.
    let wrong = db.another(Some(SecretBox::new(&[7; 32]))).await;
    assert!(matches!(
        wrong.get_provider("openai-main").await,
        Err(Error::Secret(store::SecretError::Decrypt))
    ));
    let keyless = db.another(None).await;
    assert!(matches!(
        keyless.get_provider("openai-main").await,
        Err(Error::NoSecretKey)
    ));
    assert!(matches!(
        keyless.create_provider("x", &input).await,
        Err(Error::NoSecretKey)
    ));
    // A provider without a secret needs no key.
    let plain = ProviderInput {
        secret: None,
        ..input.clone()
    };
    keyless.create_provider("local", &plain).await.unwrap();

    let upd = s
        .update_provider(
            "openai-main",
            &ProviderInput {
                base_url: "https://other.example.test".into(),
                secret: Some("sk-rotated-zzzzzzzz9999".into()),
                ..input.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(upd.secret.as_deref(), Some("sk-rotated-zzzzzzzz9999"));
    let names: Vec<String> = s
        .list_providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["local", "openai-main"]);
    s.delete_provider("openai-main").await.unwrap();
    assert!(matches!(
        s.update_provider("openai-main", &input).await,
        Err(Error::NotFound { .. })
    ));
}
