// Waits until a Kafka cluster has every broker registered and unfenced, for
// scripts/kafka: `java -cp "<kafka libs>/*" Ready.java <bootstrap> <brokers> <seconds>
// [client.properties]`. Exits 0 when `describeCluster` lists <brokers> nodes and a
// controller, 1 when the deadline passes first, naming what it last saw.
import java.io.FileReader;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class Ready {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    int want = Integer.parseInt(args[1]);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));
    Properties props = new Properties();
    if (args.length > 3) {
      try (FileReader reader = new FileReader(args[3])) {
        props.load(reader);
      }
    }
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
    String last = "no answer";
    try (Admin admin = Admin.create(props)) {
      while (System.nanoTime() < deadline) {
        try {
          DescribeClusterResult cluster = admin.describeCluster();
          int seen = cluster.nodes().get(5, TimeUnit.SECONDS).size();
          boolean controller = cluster.controller().get(5, TimeUnit.SECONDS) != null;
          if (seen >= want && controller) {
            System.out.println("ready: " + seen + " brokers registered");
            return;
          }
          last = seen + " of " + want + " brokers registered";
        } catch (Exception e) {
          last = e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
        }
        Thread.sleep(250);
      }
    }
    System.err.println("not ready: " + last);
    System.exit(1);
  }
}
