package gateway_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// sharedCluster, while TestOnRedisCluster runs, is the Redis Cluster every
// stack without a Redis of its own uses; clusterPrefix numbers their key
// prefixes.
var (
	sharedCluster *testenv.Cluster
	clusterPrefix atomic.Int64
)

// TestOnRedisCluster runs the end-to-end tests of the decisions — sirens,
// SMS and voice, PA and dispatch, retraction racing delivery, dedup after a
// retracted false alarm, CAP Update and Cancel, 52 panels for one event,
// panel resets, quarantine, four-eyes, a killed instance, and the
// gateway's model — on a real three-master Redis Cluster, the queue spread
// over twelve shards (the default there). Each test has its own key
// prefix on the one cluster.
func TestOnRedisCluster(t *testing.T) {
	sharedCluster = testenv.RedisCluster(t, 3)
	t.Cleanup(func() { sharedCluster = nil })
	for name, test := range map[string]func(*testing.T){
		"AlertSoundsSirensAndIsDelivered":         TestAlertSoundsSirensAndIsDelivered,
		"DuplicatesAnswer200WithTheFirstID":       TestDuplicatesAnswer200WithTheFirstID,
		"RealAlarmAfterRetractedFalseAlarmSounds": TestRealAlarmAfterRetractedFalseAlarmSounds,
		"RetractionMidDelivery":                   TestRetractionMidDelivery,
		"CAPUpdateReplacesQueuedAlert":            TestCAPUpdateReplacesQueuedAlert,
		"CAPCancelBeforeAlert":                    TestCAPCancelBeforeAlert,
		"CAPCancelRetracts":                       TestCAPCancelRetracts,
		"PAAndDispatchEndToEnd":                   TestPAAndDispatchEndToEnd,
		"SMSAndVoiceEndToEnd":                     TestSMSAndVoiceEndToEnd,
		"RetractionDuringSMSFanout":               TestRetractionDuringSMSFanout,
		"FiftyTwoTriggersOneAlert":                TestFiftyTwoTriggersOneAlert,
		"PanelResetRetracts":                      TestPanelResetRetracts,
		"QuarantinedTriggers":                     TestQuarantinedTriggers,
		"FourEyesStory":                           TestFourEyesStory,
		"InstanceKilledMidAlertOtherFinishes":     TestInstanceKilledMidAlertOtherFinishes,
		"GatewayModel":                            TestGatewayModel,
	} {
		t.Run(name, test)
	}
}

// A gateway on Redis Cluster (three masters with a replica each,
// wait_replicas: 1) keeps every alert it answered through a kill -9 of the
// master holding the sender's shard: a sender retrying a 503 with the same
// Idempotency-Key gets one alert, the replica takes over, the gateway
// follows it, and every alert answered 202 — before or after — sounds.
func TestClusterFailoverGateway(t *testing.T) {
	c := testenv.RedisClusterReplicated(t)
	s := newStack(t, stackOptions{cluster: c})
	body := `{"status":"actual","event":"Gas %d","severity":"Extreme","urgency":"Immediate","zones":["school"],"channels":["siren"]}`
	var ids []string
	post := func(i int) {
		key := fmt.Sprintf("cluster-%d", i)
		deadline := time.Now().Add(40 * time.Second)
		for {
			r := s.post(fmt.Sprintf(body, i), "Idempotency-Key", key)
			if r.Code == 202 || r.Code == 200 {
				ids = append(ids, r.Body["id"].(string))
				return
			}
			if r.Code != 503 || time.Now().After(deadline) {
				t.Errorf("alert %d = %d %s", i, r.Code, r.Raw)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i := range 5 {
		post(i)
	}
	// The master holding the alerts' shard (the sender's home).
	ctx := context.Background()
	cc := s.rdb.(*redis.ClusterClient)
	var holder string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if keys, err := m.Keys(ctx, "*:a:"+ids[0]).Result(); err == nil && len(keys) > 0 {
			holder = m.Options().Addr
		}
		return nil
	})
	if err != nil || holder == "" {
		t.Fatalf("no master holds alert %s (%v)", ids[0], err)
	}
	victim := c.Server(holder)
	victim.Kill()
	posted := make(chan struct{})
	go func() { // ends after 20 alerts were answered (post gives up after 40s)
		defer close(posted)
		for i := 5; i < 25; i++ {
			post(i)
		}
	}()
	// The promoted replica has no replica of its own: the old master comes
	// back as one, as an operator would bring it, so wait_replicas is met
	// again; until then the sender gets 503 and retries.
	time.Sleep(6 * time.Second)
	victim.Restart()
	<-posted
	seen := map[string]bool{}
	for i, id := range ids {
		if seen[id] {
			t.Errorf("alert %d answered with %s, which another request already got", i, id)
		}
		seen[id] = true
		eventually(t, 20*time.Second, fmt.Sprintf("alert %d (%s) sounded", i, id), func() bool {
			return s.sirenCounts(id)["delivered"] == float64(3)
		})
	}
}
