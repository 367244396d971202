using Relay.L4;

namespace Relay.Tests.L4;

public sealed class SmallFeatureCollectionTests
{
    [Fact]
    public void SetGetReplaceAndRemoveBehaveAsFeatureCollection()
    {
        var features = new SmallFeatureCollection();
        Assert.Null(features.Get<string>());
        Assert.Empty(features);

        Type[] keys = [typeof(int), typeof(long), typeof(short), typeof(byte), typeof(double), typeof(float)];
        for (var i = 0; i < keys.Length; i++)
        {
            features[keys[i]] = i;
        }

        features.Set("one");
        features.Set<IList<int>>([1]);
        Assert.Equal("one", features.Get<string>());
        Assert.Equal(8, features.Count());
        var revision = features.Revision;

        features.Set("two");
        Assert.Equal("two", features.Get<string>());
        Assert.True(features.Revision > revision);
        Assert.Equal(8, features.Count());

        features.Set<string>(null);
        Assert.Null(features.Get<string>());
        Assert.Equal(7, features.Count());
        Assert.Equal([1], features.Get<IList<int>>()!);
        Assert.Equal(5, features[typeof(float)]);
        Assert.False(features.IsReadOnly);
    }
}
