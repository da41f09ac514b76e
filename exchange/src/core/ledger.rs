//! The ledger: available and blocked money per account, the fee account, and running
//! totals so that conservation is checked in O(1) after every change.
//!
//! **No sum can overflow:** every balance and every running total is a part of
//! `created`, and `created` never exceeds [`CREATED_SAT_MAX`] (= `u64::MAX`): an account
//! that would push it over opens unfunded. So `available + blocked + fees == created`
//! holds in u64 without wrapping, whatever the starting capital (at most
//! `PRICE_SAT_MAX`) and however many accounts there are.

use foldhash::HashMap;

use bitwrk_protocol::{Address, Sat};

use super::CoreError;
use crate::limits::CREATED_SAT_MAX;

#[derive(Debug, Clone, Copy, Default)]
struct Account {
    available: u64,
    blocked: u64,
}

/// Accounts, fee account and totals. Every method keeps `available + blocked + fees ==
/// created`; [`Ledger::assert_conserved`] checks it and panics (stops the exchange) if not.
#[derive(Debug, Clone)]
pub struct Ledger {
    starting_capital: u64,
    accounts: HashMap<Address, Account>,
    created: u64,
    available_total: u64,
    blocked_total: u64,
    fees: u64,
}

impl Ledger {
    pub fn new(starting_capital: Sat) -> Ledger {
        Ledger {
            starting_capital: starting_capital.0,
            accounts: HashMap::default(),
            created: 0,
            available_total: 0,
            blocked_total: 0,
            fees: 0,
        }
    }

    /// What an account seen for the first time is credited: the starting capital if the
    /// shell `funded` it (its source is within the funding quota, PROTOCOL §3) and the
    /// money created so far leaves room for it under [`CREATED_SAT_MAX`]; else nothing.
    // While the cap is u64::MAX the comparison is implied by checked_add; it stays so that
    // a lower cap needs no other change.
    #[allow(clippy::absurd_extreme_comparisons)]
    pub fn credit_for_new(&self, funded: bool) -> u64 {
        match self.created.checked_add(self.starting_capital) {
            Some(total) if funded && total <= CREATED_SAT_MAX => self.starting_capital,
            _ => 0,
        }
    }

    /// Open an account the first time it is seen, credited [`Ledger::credit_for_new`].
    pub fn open_account(&mut self, a: &Address, funded: bool) {
        if !self.accounts.contains_key(a) {
            let credit = self.credit_for_new(funded);
            self.accounts.insert(a.clone(), Account { available: credit, blocked: 0 });
            // Cannot fail: credit_for_new keeps created + credit <= CREATED_SAT_MAX.
            self.created = self.created.checked_add(credit).expect("bounded by CREATED_SAT_MAX");
            self.available_total =
                self.available_total.checked_add(credit).expect("a part of created");
        }
    }

    /// Whether the account has been seen (and credited).
    pub fn knows(&self, a: &Address) -> bool {
        self.accounts.contains_key(a)
    }

    fn acct(&mut self, a: &Address) -> &mut Account {
        self.accounts.get_mut(a).expect("ledger: account used before it was opened")
    }

    /// Move `amount` from available to blocked, or refuse if not enough is available.
    pub fn block(&mut self, a: &Address, amount: Sat) -> Result<(), CoreError> {
        let acct = self.acct(a);
        if acct.available < amount.0 {
            return Err(CoreError::InsufficientFunds { need: amount.0, available: acct.available });
        }
        // Moving money between parts of `created` cannot overflow (module doc).
        acct.available -= amount.0;
        acct.blocked = acct.blocked.checked_add(amount.0).expect("a part of created");
        self.available_total -= amount.0;
        self.blocked_total = self.blocked_total.checked_add(amount.0).expect("a part of created");
        Ok(())
    }

    /// Move `amount` from blocked back to available.
    pub fn unblock(&mut self, a: &Address, amount: Sat) {
        let acct = self.acct(a);
        acct.blocked =
            acct.blocked.checked_sub(amount.0).expect("ledger: unblocking more than is blocked");
        acct.available = acct.available.checked_add(amount.0).expect("a part of created");
        self.blocked_total -= amount.0;
        self.available_total =
            self.available_total.checked_add(amount.0).expect("a part of created");
    }

    /// Settle an escrow by its split: the whole leaves the buyer's blocked money, each
    /// part goes to the seller's available money, the fee account, the buyer's available.
    pub fn settle(&mut self, buyer: &Address, seller: &Address, split: bitwrk_protocol::tx::Split) {
        // Every sum here is at most what the buyer had blocked, a part of `created`.
        let add = |a: u64, b: u64| a.checked_add(b).expect("a part of created");
        let total = add(add(split.seller.0, split.fees.0), split.buyer.0);
        let b = self.acct(buyer);
        b.blocked = b.blocked.checked_sub(total).expect("ledger: settling more than is blocked");
        b.available = add(b.available, split.buyer.0);
        let s = self.acct(seller);
        s.available = add(s.available, split.seller.0);
        self.blocked_total -= total;
        self.available_total = add(self.available_total, add(split.seller.0, split.buyer.0));
        self.fees = add(self.fees, split.fees.0);
    }

    /// (available, blocked) of an account; an unseen account shows what it would be
    /// credited if it opened now, `funded` or not.
    pub fn balance(&self, a: &Address, funded: bool) -> (Sat, Sat) {
        match self.accounts.get(a) {
            Some(acct) => (Sat(acct.available), Sat(acct.blocked)),
            None => (Sat(self.credit_for_new(funded)), Sat::ZERO),
        }
    }

    /// Capital credited to accounts seen from now on (a restart may change it).
    pub fn set_starting_capital(&mut self, capital: Sat) {
        self.starting_capital = capital.0;
    }

    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }
    pub fn created(&self) -> Sat {
        Sat(self.created)
    }
    pub fn available_total(&self) -> Sat {
        Sat(self.available_total)
    }
    pub fn blocked_total(&self) -> Sat {
        Sat(self.blocked_total)
    }
    pub fn fees(&self) -> Sat {
        Sat(self.fees)
    }

    /// (address, blocked) of every account.
    pub fn iter(&self) -> impl Iterator<Item = (&Address, Sat)> {
        self.accounts.iter().map(|(a, acct)| (a, Sat(acct.blocked)))
    }

    /// The conservation invariant, in O(1). Runs after every change in production.
    pub fn assert_conserved(&self) {
        let sum = self.available_total as u128 + self.blocked_total as u128 + self.fees as u128;
        assert_eq!(
            sum, self.created as u128,
            "MONEY NOT CONSERVED: available {} + blocked {} + fees {} != created {}",
            self.available_total, self.blocked_total, self.fees, self.created
        );
    }

    /// The running totals equal the sums over all accounts (O(accounts)).
    pub fn assert_sums(&self) {
        let avail: u128 = self.accounts.values().map(|a| a.available as u128).sum();
        let blocked: u128 = self.accounts.values().map(|a| a.blocked as u128).sum();
        assert_eq!(avail, self.available_total as u128, "available total drifted");
        assert_eq!(blocked, self.blocked_total as u128, "blocked total drifted");
    }
}
