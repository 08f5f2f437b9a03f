//! Places orders in a loop until killed: `order-loop DATABASE_URL [INVENTORY_URL]`
//! (the second places the inventory boundary on its own database). The kill tests run
//! it as a child process and SIGKILL it (at random moments, or where it froze at a
//! pause point), then check that every commit was all-or-nothing. With
//! `ORDER_LOOP_REFUNDS=1` it refunds each order after placing it: one unit of its first
//! line, then the rest.

use std::process::ExitCode;

use chrono::Utc;
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, Sku};
use orchestration::{DatabaseUrl, Fabric, Topology};
use orders::CustomerId;
use tests::order_loop::{INITIAL_STOCK, REFUNDS_VAR, SKUS};
use workflows::{PlaceOrderCommand, PlaceOrderOutcome, RefundOrderCommand, Requester};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (database, inventory) = match args.as_slice() {
        [database] => (database, None),
        [database, inventory] => (database, Some(inventory)),
        _ => {
            eprintln!("usage: order-loop DATABASE_URL [INVENTORY_URL]");
            return ExitCode::FAILURE;
        }
    };
    match run(database, inventory).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("order-loop: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(database: &str, inventory: Option<&String>) -> Result<(), Box<dyn std::error::Error>> {
    let mut topology = Topology::new(database.parse::<DatabaseUrl>()?);
    if let Some(url) = inventory {
        topology = topology.with_override(inventory::SCHEMA, url.parse()?);
    }
    let fabric = Fabric::connect(&topology, migrations::all()).await?;
    // Events are written for the app's subscribers; this process never delivers them.
    workflows::subscribe(&fabric, &workflows::MailSettings::default())?;
    fabric.databases().migrate().await?;
    let catalog = fabric.connection(inventory::SCHEMA)?;
    for sku in SKUS {
        let product = NewProduct {
            sku: Sku::parse(sku)?,
            name: ProductName::parse(sku)?,
            price: Money::new(100, Currency::parse("EUR")?)?,
            initial_stock: INITIAL_STOCK,
        };
        match inventory::add_product(catalog, &product, Utc::now()).await {
            Ok(_) | Err(inventory::Error::DuplicateSku { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let workflow = tests::order_loop::place_order(&fabric)?;
    let refunds = tests::order_loop::refund_order(&fabric)?;
    let refunding = std::env::var_os(REFUNDS_VAR).is_some();
    let customer = CustomerId::parse("killer")?;
    let wait = std::time::Duration::from_secs(3600);
    loop {
        let mut skus = SKUS.to_vec();
        fastrand::shuffle(&mut skus);
        let lines = skus[..fastrand::usize(1..=SKUS.len())]
            .iter()
            .map(|sku| Ok((Sku::parse(sku)?, Quantity::new(fastrand::i64(1..=3))?)))
            .collect::<Result<Vec<_>, inventory::Invalid>>()?;
        let first = lines[0].0.clone();
        let command = PlaceOrderCommand {
            customer_id: customer.clone(),
            lines,
        };
        let placement = workflow.place(None, &command, wait).await?;
        let PlaceOrderOutcome::Placed(order) = placement.outcome else {
            continue;
        };
        if !refunding {
            continue;
        }
        for lines in [Some(vec![(first.clone(), Quantity::new(1)?)]), None] {
            let refund = RefundOrderCommand {
                order_id: order.id,
                lines,
                requested_by: Requester::Customer(customer.clone()),
            };
            refunds.refund(None, &refund, wait).await?;
        }
    }
}
