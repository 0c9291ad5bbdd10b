-- The "floor": the same figures as marts.segment_flow_matrix and marts.segment_clv, computed in
-- ONE hand-written DuckDB script straight from the landing CSV files, in memory, no framework.
-- It is what the data costs at least; the pipeline's overhead is measured against it.
--
-- Parameters (benchmarks/floor.py replaces the __NAME__ placeholders by simple substitution, the
-- business ones from dagster_project/config.py, where they are defined once; by hand: edit
-- them, then `duckdb < benchmarks/floor.sql` with a 2.x CLI):
SET VARIABLE raw_dir = '__RAW_DIR__';
SET VARIABLE as_of = DATE '__AS_OF__';
SET VARIABLE period_months = __PERIOD_MONTHS__;
-- Segment cut-offs (value share = active customers with strictly higher revenue / active customers).
SET VARIABLE cut_super = __CUT_SUPER__;
SET VARIABLE cut_top = __CUT_TOP__;
SET VARIABLE cut_middle = __CUT_MIDDLE__;

-- 1. The landing rows, typed as the pipeline types them, exact duplicates counted once,
--    nothing after the as-of date.
CREATE TEMP TABLE tx AS
SELECT DISTINCT transaction_id, customer_id, transaction_date, amount, product_id, channel
FROM read_csv(
    getvariable('raw_dir') || '/transactions/*.csv',
    header = true, union_by_name = true,
    columns = {'transaction_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'transaction_date': 'DATE',
               'amount': 'DECIMAL(18,2)', 'product_id': 'VARCHAR', 'channel': 'VARCHAR'}
)
WHERE transaction_date <= getvariable('as_of');

-- 2. Periods: k = 0 the latest, (as_of - P(k+1) months, as_of - Pk months], back to the oldest
--    transaction or NPS answer (as the pipeline); a calendar maps every date to its period.
CREATE TEMP TABLE periods AS
WITH first_date AS (
    SELECT least(
        (SELECT min(transaction_date) FROM tx),
        (SELECT min(response_date) FROM read_csv(getvariable('raw_dir') || '/nps/*.csv', header = true,
                                                 columns = {'response_id': 'VARCHAR', 'customer_id': 'VARCHAR',
                                                            'response_date': 'DATE', 'score': 'VARCHAR',
                                                            'survey': 'VARCHAR', 'comment': 'VARCHAR'})
         WHERE response_date <= getvariable('as_of'))
    ) AS d
),
series AS (
    SELECT cast(range AS integer) AS period_index,
        cast(getvariable('as_of') - to_months(cast(getvariable('period_months') * range AS integer)) AS date) AS period_end,
        cast(getvariable('as_of') - to_months(cast(getvariable('period_months') * (range + 1) AS integer)) AS date)
            + 1 AS period_start
    FROM range(1000)
)
SELECT series.* FROM series, first_date WHERE series.period_end >= first_date.d;

CREATE TEMP TABLE calendar AS
SELECT cast(day AS date) AS d, period_index
FROM periods, generate_series(period_start, period_end, INTERVAL 1 DAY) AS g(day);

-- 3. Active customers per period, ranked: share, segment (1 = super ... 4 = bottom).
CREATE TEMP TABLE seg AS
WITH per_customer AS (
    SELECT tx.customer_id, calendar.period_index,
        sum(tx.amount) AS revenue,
        count(*) FILTER (WHERE tx.amount > 0) AS purchases
    FROM tx JOIN calendar ON tx.transaction_date = calendar.d
    GROUP BY ALL
),
ranked AS (
    SELECT *,
        cast(rank() OVER (PARTITION BY period_index ORDER BY revenue DESC) - 1 AS double)
            / count(*) OVER (PARTITION BY period_index) AS share
    FROM per_customer
    WHERE purchases > 0
)
SELECT customer_id, period_index, revenue, purchases,
    CASE WHEN share < getvariable('cut_super') THEN 1 WHEN share < getvariable('cut_top') THEN 2
         WHEN share < getvariable('cut_middle') THEN 3 ELSE 4 END AS seg
FROM ranked;

-- 4. Flows from period k + 1 to k, for every k that has a k + 1.
CREATE TEMP TABLE flows AS
WITH later AS (
    SELECT period_index AS k FROM periods WHERE period_index + 1 IN (SELECT period_index FROM periods)
),
first_active AS (
    SELECT customer_id, max(period_index) AS first_k FROM seg GROUP BY customer_id
),
cur AS (SELECT seg.* FROM seg JOIN later ON seg.period_index = later.k),
prev AS (SELECT seg.* FROM seg JOIN later ON seg.period_index = later.k + 1)
SELECT
    coalesce(cur.period_index, prev.period_index - 1) AS period_index,
    prev.seg AS from_seg,
    cur.seg AS to_seg,
    CASE WHEN cur.seg IS NULL THEN 'lost'
         WHEN prev.seg IS NULL AND first_active.first_k = cur.period_index THEN 'new'
         WHEN prev.seg IS NULL THEN 'recovered'
         WHEN cur.seg = prev.seg THEN 'retained'
         WHEN cur.seg < prev.seg THEN 'upgraded'
         ELSE 'downgraded' END AS flow,
    coalesce(cur.purchases, 0) AS purchases,
    CASE WHEN cur.seg IS NULL THEN prev.revenue ELSE cur.revenue END AS revenue
FROM cur
FULL OUTER JOIN prev ON cur.customer_id = prev.customer_id AND cur.period_index = prev.period_index - 1
JOIN first_active ON first_active.customer_id = coalesce(cur.customer_id, prev.customer_id);

CREATE TEMP TABLE names AS
SELECT * FROM (VALUES (1, 'super'), (2, 'top'), (3, 'middle'), (4, 'bottom'), (5, 'total')) AS t(seg, name);

-- 5. The flow matrix (one row per non-empty cell).
CREATE TABLE floor_flow AS
SELECT period_index, f.name AS from_segment, t.name AS to_segment, flow,
    count(*) AS customers, sum(purchases) AS purchases, sum(revenue) AS revenue,
    cast(sum(revenue) AS double) / count(*) AS revenue_per_customer
FROM flows
LEFT JOIN names f ON f.seg = flows.from_seg
LEFT JOIN names t ON t.seg = flows.to_seg
GROUP BY ALL;

-- 6. Retention of period k + 1's segments into k, then CLV per segment of period k (+ total).
CREATE TABLE floor_clv AS
WITH grid AS (
    SELECT k.period_index, names.seg
    FROM (SELECT DISTINCT period_index FROM flows) AS k, names
),
lost_by_segment AS (
    SELECT period_index, from_seg AS seg, count(*) AS base, count(*) FILTER (WHERE flow = 'lost') AS lost
    FROM flows WHERE from_seg IS NOT NULL GROUP BY ALL
),
retention AS (
    SELECT grid.period_index, grid.seg, coalesce(l.base, 0) AS base, coalesce(l.lost, 0) AS lost
    FROM grid LEFT JOIN (
        SELECT * FROM lost_by_segment
        UNION ALL SELECT period_index, 5, sum(base), sum(lost) FROM lost_by_segment GROUP BY period_index
    ) AS l USING (period_index, seg)
),
active_by_segment AS (
    SELECT period_index, seg, count(*) AS customers, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM seg GROUP BY ALL
),
by_segment AS (
    SELECT grid.period_index, grid.seg, coalesce(a.customers, 0) AS customers,
        coalesce(a.purchases, 0) AS purchases, coalesce(a.revenue, 0) AS revenue
    FROM grid LEFT JOIN (
        SELECT * FROM active_by_segment
        UNION ALL SELECT period_index, 5, sum(customers), sum(purchases), sum(revenue)
        FROM active_by_segment GROUP BY period_index
    ) AS a USING (period_index, seg)
),
valued AS (
    SELECT b.period_index, b.seg, b.customers, b.purchases, b.revenue,
        cast(b.revenue AS double) / nullif(b.customers, 0) * 12.0 / getvariable('period_months') AS revenue_per_customer,
        getvariable('period_months') / 12.0 / nullif(cast(r.lost AS double) / nullif(r.base, 0), 0) AS duration_years,
        1 - cast(r.lost AS double) / nullif(r.base, 0) AS retention_rate
    FROM by_segment b JOIN retention r USING (period_index, seg)
)
SELECT period_index, names.name AS value_segment, customers, purchases, revenue,
    cast(purchases AS double) / nullif(customers, 0) AS purchases_per_customer,
    cast(revenue AS double) / nullif(purchases, 0) AS revenue_per_purchase,
    revenue_per_customer, duration_years,
    revenue_per_customer * duration_years AS clv,
    CASE WHEN valued.seg < 5 THEN revenue_per_customer * duration_years
        / nullif(max(CASE WHEN valued.seg = 4 THEN revenue_per_customer * duration_years END)
                 OVER (PARTITION BY period_index), 0) END AS clv_index,
    retention_rate,
    CASE WHEN valued.seg = 5
         THEN sum(CASE WHEN valued.seg < 5 THEN customers * revenue_per_customer * duration_years END)
              OVER (PARTITION BY period_index)
         ELSE customers * revenue_per_customer * duration_years END AS portfolio_value
FROM valued JOIN names USING (seg);
